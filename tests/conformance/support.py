"""Plain helpers shared by the conformance tests: URLs, PKCE, JWT parts, error bodies, forms."""

import base64
import hashlib
import json
import os
import re
import secrets
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import httpx

# The server under test must be configured with exactly these two values (see README.md).
SITE_URL = "http://localhost:3000"
URI_ALLOW_LIST = "http://localhost:3000/**,https://*.example.com/callback,http://192.168.1.10/**"
APP_CALLBACK = SITE_URL + "/auth/callback"
REUSE_INTERVAL = 10
# Passkeys: the server's relying party (GOTRUE_WEBAUTHN_RP_*, see README.md). WebAuthn wants a
# host name, and the origin is the site's.
PASSKEY_RP_ID = "localhost"
PASSKEY_RP_NAME = "Conformance"
PASSKEY_ORIGIN = SITE_URL
# The header the server keys POST /token's rate limit on (GOTRUE_RATE_LIMIT_HEADER). Every client
# the suite makes sends a fresh value in it, so each test has a bucket of its own.
RATE_LIMIT_HEADER = os.environ.get("AUTH_CONFORMANCE_RATE_LIMIT_HEADER") or "X-Conformance-Client"
RATE_LIMIT_BURST = 30
FLOW_STATE_EXPIRY = 300
TIMEOUT = 10.0

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REFRESH_TOKEN_RE = re.compile(r"^[a-z2-7]{12}$")


def pkce_pair(method: str = "s256") -> tuple[str, str]:
    """Return (verifier, challenge) for the given method."""
    verifier = secrets.token_urlsafe(48)
    if method.lower() == "plain":
        return verifier, verifier
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def rate_limit_key() -> dict[str, str]:
    """A rate-limit header with a value no other client uses: a bucket of its own."""
    return {RATE_LIMIT_HEADER: "conformance-" + secrets.token_hex(8)}


def query_of(url: str) -> dict[str, list[str]]:
    """Query parameters of a URL, blank values kept."""
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def fragment_of(url: str) -> dict[str, list[str]]:
    """Fragment of a URL parsed as form parameters, blank values kept."""
    return parse_qs(urlsplit(url).fragment, keep_blank_values=True)


def without_query(url: str) -> str:
    """The URL with its query and fragment removed."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def single(params: dict[str, list[str]]) -> dict[str, str]:
    """Collapse parse_qs output, asserting that no key repeats."""
    assert all(len(v) == 1 for v in params.values()), params
    return {k: v[0] for k, v in params.items()}


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt_parts(token: str) -> tuple[dict, dict]:
    """(header, claims) of a JWT, without verification; dicts keep the JSON key order."""
    header, payload, _signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def b64url_json(value: dict) -> str:
    """Encode a dict as an unpadded base64url JSON segment."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def assert_error(resp: httpx.Response, status: int, code: str, message: str | None = None):
    """Assert a 2024-01-01 error body: status, {"code", "message"} and the error header."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert resp.headers.get("x-sb-error-code") == code
    if message is not None:
        assert body["message"] == message


def assert_redirect_error(location: str, error: str, code: str | None, description: str):
    """Assert an error redirect (§2.6): query and fragment both carry the error."""
    expected = {"error": error, "error_description": description}
    if code is not None:
        expected["error_code"] = code
    query = single(query_of(location))
    fragment = single(fragment_of(location))
    assert {k: query[k] for k in query if k.startswith("error")} == expected
    assert {k: fragment[k] for k in fragment if k.startswith("error")} == expected
    assert fragment.get("sb") == ""


def random_account_fields(verified: bool = True, email: str | None = None) -> dict:
    """Fields for a fresh stand-in GitHub account."""
    login = "u" + uuid.uuid4().hex[:12]
    return {
        "login": login,
        "name": f"User {login}",
        "email": email or f"{login}@example.com",
        "verified": verified,
        "id": 10_000_000 + secrets.randbelow(1_000_000_000),
    }


class _FormParser(HTMLParser):
    """Collect forms (action, method, inputs, buttons) and links from an HTML page."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[dict] = []
        self._button: dict | None = None
        self._link: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "method": (
                attrs.get("method") or "get").lower(), "inputs": [], "buttons": []})
        elif tag == "input" and self.forms:
            kind = (attrs.get("type") or "text").lower()
            entry = {"type": kind, "name": attrs.get("name"), "value": attrs.get("value") or "",
                     "checked": "checked" in attrs}
            if kind == "submit":
                self.forms[-1]["buttons"].append({**entry, "text": entry["value"]})
            else:
                self.forms[-1]["inputs"].append(entry)
        elif tag == "button" and self.forms:
            if (attrs.get("type") or "submit").lower() == "submit":
                self._button = {"name": attrs.get("name"), "value": attrs.get("value") or "",
                                "text": ""}
                self.forms[-1]["buttons"].append(self._button)
        elif tag == "a":
            self._link = {"href": attrs.get("href") or "", "text": ""}
            self.links.append(self._link)

    def handle_endtag(self, tag):
        if tag == "button":
            self._button = None
        elif tag == "a":
            self._link = None

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data
        if self._link is not None:
            self._link["text"] += data


def consent_submission(page: httpx.Response, login: str | None, button: str):
    """Work out the request a browser makes on the consent page.

    Returns ("GET", url, None) for a link, or (method, url, form data) for a form whose submit
    button's text is `button` (case-insensitive); `login` selects the account radio input.
    """
    parser = _FormParser()
    parser.feed(page.text)
    wanted = button.lower()
    for form in parser.forms:
        chosen = next((b for b in form["buttons"]
                       if wanted in (b["text"].strip().lower(), b["value"].lower())), None)
        if chosen is None:
            continue
        data = {i["name"]: i["value"] for i in form["inputs"]
                if i["name"] and i["type"] == "hidden"}
        radios = [i for i in form["inputs"] if i["type"] == "radio" and i["name"]]
        if login is not None:
            match = [r for r in radios if r["value"] == login]
            assert match, f"account {login!r} is not offered on the consent page"
            data[match[0]["name"]] = login
        else:
            checked = [r for r in radios if r["checked"]]
            for radio in checked[:1]:
                data[radio["name"]] = radio["value"]
        if chosen["name"]:
            data[chosen["name"]] = chosen["value"]
        return form["method"].upper(), urljoin(str(page.url), form["action"]), data
    for link in parser.links:
        if link["text"].strip().lower() == wanted:
            return "GET", urljoin(str(page.url), link["href"]), None
    raise AssertionError(f"no {button!r} control on the consent page")
