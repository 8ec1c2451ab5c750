"""Hostile input on every route (hypothesis): no 500, no traceback, nothing secret echoed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supabase_auth.constants import STORAGE_KEY

import auth
from app import create_app
from emulator import keys
from tests.helpers import SECRET, SITE_URL, Browser, csrf_token

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
ROUTES = ["/", "/signin", "/signin/github", "/callback", "/account", "/healthz", "/signout",
          "/static/style.css"]
INTERESTING = ["next", "code", "error", "error_code", "error_description", "state", "scope",
               "provider", "redirect_to", "csrf_token"]
# Text a person (or an attacker) can put in a URL, a form or a header.
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    exclude_characters="\x7f"), max_size=80)
names = st.one_of(st.sampled_from(INTERESTING), st.text(min_size=1, max_size=12))
params = st.dictionaries(names, text, max_size=5)
headers = st.dictionaries(
    st.sampled_from(["Host", "Referer", "Origin", "X-Forwarded-Host", "X-Forwarded-For",
                     "X-Forwarded-Proto", "Accept", "Accept-Language", "User-Agent",
                     "Content-Type", "If-None-Match", "Authorization", "X-CSRFToken"]),
    header_text, max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8)


@pytest.fixture(scope="module")
def fuzz_app(emulator, tmp_path_factory):
    app = create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False, "SECRET_KEY": SECRET,
                      "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
                      "SUPABASE_URL": emulator.url, "SUPABASE_KEY": emulator.anon_key,
                      "SITE_URL": SITE_URL})
    yield app
    app.extensions["supabase"].http.close()


@pytest.fixture(scope="module")
def signed_in_cookie(fuzz_app, emulator):
    """One signed-in cookie for the module, and the secrets it must never see echoed."""
    browser = Browser(fuzz_app.test_client(), emulator.url)
    try:
        assert browser.sign_in("octocat").status_code == 302
        cookie = browser.client.get_cookie("session").value
        page = browser.client.get("/").get_data(as_text=True)
    finally:
        browser.close()
    tokens = fuzz_app.session_interface.get_signing_serializer(fuzz_app).loads(cookie)[
        STORAGE_KEY]
    return {"cookie": cookie, "csrf": csrf_token(page),
            "secrets": [SECRET, keys.JWT_SECRET, keys.SERVICE_ROLE_KEY, emulator.anon_key,
                        *(tokens[name] for name in ("access_token", "refresh_token",
                                                    "provider_token"))]}


def check(response, secrets: list[str], inputs: list[str] = ()) -> None:
    """No server error, no traceback, no secret, no input reflected unescaped."""
    body = response.get_data(as_text=True)
    response.close()
    provider_error = response.status_code == 502 and "provider reported a problem" in body
    assert response.status_code < 500 or provider_error, body[:500]
    assert "Traceback" not in body
    echoed = " ".join(f"{name}: {value}" for name, value in response.headers.items()
                      if name != "Set-Cookie") + body
    for secret in secrets:
        assert secret not in echoed
    for value in inputs:
        if len(value) > 3 and any(char in value for char in "<>\""):
            assert value not in body, f"{value!r} reflected unescaped"


def client_for(app, cookie: str | None):
    client = app.test_client(use_cookies=False)
    if cookie is not None:
        client.environ_base["HTTP_COOKIE"] = f"session={cookie}"
    return client


@pytest.mark.parametrize("signed_in", [False, True])
@pytest.mark.parametrize("route", ROUTES)
@FUZZ
@given(query=params)
def test_query_parameters(fuzz_app, signed_in_cookie, route, signed_in, query):
    client = client_for(fuzz_app, signed_in_cookie["cookie"] if signed_in else None)
    check(client.get(route, query_string=query), signed_in_cookie["secrets"],
          list(query.values()))


@pytest.mark.parametrize("signed_in", [False, True])
@FUZZ
@given(form=params, with_token=st.booleans())
def test_sign_out_form_fields(fuzz_app, signed_in_cookie, signed_in, form, with_token):
    client = client_for(fuzz_app, signed_in_cookie["cookie"] if signed_in else None)
    if with_token:
        form = {**form, "csrf_token": signed_in_cookie["csrf"]}
    check(client.post("/signout", data=form), signed_in_cookie["secrets"], list(form.values()))


@pytest.mark.parametrize("route", ROUTES)
@FUZZ
@given(extra=headers)
def test_headers(fuzz_app, signed_in_cookie, route, extra):
    client = client_for(fuzz_app, signed_in_cookie["cookie"])
    check(client.get(route, headers=extra), signed_in_cookie["secrets"], list(extra.values()))


@pytest.mark.parametrize("route", ["/", "/account", "/callback?code=abc", "/signin/github"])
@FUZZ
@given(cookie=header_text.filter(lambda value: ";" not in value))
def test_raw_cookie(fuzz_app, signed_in_cookie, route, cookie):
    check(client_for(fuzz_app, cookie).get(route), signed_in_cookie["secrets"])


@pytest.mark.parametrize("route", ["/", "/account", "/callback?code=abc", "/signin/github"])
@FUZZ
@given(payload=st.one_of(
    json_values,
    st.fixed_dictionaries({STORAGE_KEY: json_values}),
    st.fixed_dictionaries({STORAGE_KEY: st.fixed_dictionaries({
        "access_token": text, "refresh_token": text, "expires_at": st.integers()})}),
    st.fixed_dictionaries({auth.FLOWS_KEY: json_values}),
    st.fixed_dictionaries({auth.FLOWS_KEY: st.lists(st.fixed_dictionaries(
        {"verifier": text, "next": text}), max_size=4)}),
    st.dictionaries(st.sampled_from(["_flashes", "csrf_token", "_user_id", "_fresh", "_id",
                                     "_permanent"]), json_values, max_size=3),
))
def test_signed_cookie_of_any_shape(fuzz_app, signed_in_cookie, route, payload):
    """A cookie this app's key signed, with contents it never wrote."""
    cookie = fuzz_app.session_interface.get_signing_serializer(fuzz_app).dumps(payload)
    response = client_for(fuzz_app, cookie).get(route)
    assert "Hello," not in response.get_data(as_text=True)
    check(response, signed_in_cookie["secrets"])
