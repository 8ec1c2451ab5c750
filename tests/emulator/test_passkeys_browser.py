"""The emulator's passkey API with a real browser: Chromium's virtual authenticator (the Chrome
DevTools Protocol ``WebAuthn`` domain) creates and uses a passkey, and the emulator accepts
exactly what ``PublicKeyCredential.toJSON()`` hands back."""

import re

import pytest

from emulator import keys
from emulator.serve import start_background
from tests.browsers import WAIT_MS, add_virtual_authenticator
from tests.emulator.emulator_helpers import bearer, new_session

CREATE = """async (options) => {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
  return (await navigator.credentials.create({publicKey})).toJSON();
}"""
GET = """async (options) => {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
  return (await navigator.credentials.get({publicKey})).toJSON();
}"""
ANON = {"apikey": keys.ANON_KEY}


@pytest.fixture
def emulator():
    """A served emulator with passkeys on for its own origin on ``localhost``."""
    running = start_background({"DATABASE": ":memory:", "GITHUB_AUTO_LOGIN": "octocat",
                                "PASSKEY_ENABLED": True, "WEBAUTHN_RP_ID": "localhost",
                                "WEBAUTHN_RP_DISPLAY_NAME": "Browser test",
                                "WEBAUTHN_RP_ORIGINS": "http://localhost"})
    origin = running.url.replace("127.0.0.1", "localhost")
    running.app.config["WEBAUTHN_RP_ORIGINS"] = (origin,)  # the port is known only now
    yield running, origin
    running.stop()


@pytest.fixture
def page(chromium, emulator):
    """A page on the emulator's origin with a virtual platform authenticator attached."""
    _running, origin = emulator
    context = chromium.new_context()
    context.route(re.compile(f"^(?!{re.escape(origin)}/)"), lambda route: route.abort())
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(origin + "/")
    add_virtual_authenticator(context, page)
    yield page
    context.close()


def test_a_browser_passkey_registers_and_signs_in_twice(emulator, page):
    running, _origin = emulator
    client = running.app.test_client()
    session = new_session(client)
    found = client.post("/auth/v1/passkeys/registration/options", headers=bearer(session)).json
    credential = page.evaluate(CREATE, found["options"])
    response = client.post("/auth/v1/passkeys/registration/verify", headers=bearer(session),
                           json={"challenge_id": found["challenge_id"], "credential": credential})
    assert response.status_code == 200, response.json
    for _ in range(2):  # the second sign-in checks that the stored sign count moved on
        options = client.post("/auth/v1/passkeys/authentication/options", headers=ANON).json
        assertion = page.evaluate(GET, options["options"])
        response = client.post("/auth/v1/passkeys/authentication/verify", headers=ANON,
                               json={"challenge_id": options["challenge_id"],
                                     "credential": assertion})
        assert response.status_code == 200, response.json
        assert response.json["user"]["id"] == session["user"]["id"]
    assert client.get("/auth/v1/passkeys", headers=bearer(session)).json[0]["last_used_at"]
