"""Access tokens: signing (ES256 or HS256), verification as in §4.2, and the JWKS."""

import json
from collections.abc import Callable
from typing import Any

import jwt

from . import keys
from .hooks import CustomAccessTokenHook
from .signing_keys import FixedKeyring, SigningKeys

DECODE_OPTIONS = {
    "verify_exp": False,  # checked against the emulator clock instead
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}


# Session methods that raise a session to aal2 (AMRClaim.IsAAL2Claim).
AAL2_METHODS = frozenset({"totp", "mfa/phone", "mfa/webauthn"})


class SortedKeys(json.JSONEncoder):
    """Go marshals a map with its keys sorted: so are the claims a hook returned."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "sort_keys": True})


class TokenError(Exception):
    """A bearer token that does not parse or verify; the text follows Go's jwt errors."""


class TokenService:
    """Signs and verifies JWTs with the keyring's keys (the fixed dev key alone by default)."""

    def __init__(self, config: dict[str, Any],
                 keyring: SigningKeys | FixedKeyring | None = None) -> None:
        self.alg: str = config["JWT_ALG"]
        self.secret: str = config["JWT_SECRET"]
        self.issuer = config["PUBLIC_URL"] + "/auth/v1"
        self.lifetime: int = config["JWT_EXP"]
        self.clock: Callable[[], float] = config["CLOCK"]
        self.keyring = keyring if keyring is not None else FixedKeyring()
        self.hook = (CustomAccessTokenHook(config)
                     if config["HOOK_CUSTOM_ACCESS_TOKEN_ENABLED"] else None)

    def close(self) -> None:
        """Release the hook's connection pool, if there is a hook."""
        if self.hook is not None:
            self.hook.close()

    @property
    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS body: the keyring's advertised keys, none in HS256 mode."""
        return {"keys": self.keyring.public_jwks() if self.alg == "ES256" else []}

    def sign(self, claims: dict[str, Any], encoder: type[json.JSONEncoder] | None = None) -> str:
        """Sign with the current key and its kid, or with the secret (no kid) in HS256 mode."""
        if self.alg == "ES256":
            key = self.keyring.signing_key()
            return jwt.encode(claims, key.private_key, key.alg, headers={"kid": key.kid},
                              json_encoder=encoder)
        return jwt.encode(claims, self.secret, "HS256", json_encoder=encoder)

    def access_token(self, user: dict, session: dict, now: int, method: str = "oauth",
                     ip_address: str = "") -> tuple[str, int]:
        """Issue an access token for a user and session; return (jwt, exp).

        With the custom access token hook on, the hook's claims are signed instead (exp in
        the answer stays the server's own, as on the real server).
        """
        exp = now + self.lifetime
        aal, amr = assurance(session["amr"])
        claims = {
            "iss": self.issuer,
            "sub": user["id"],
            "aud": user["aud"],
            "exp": exp,
            "iat": now,
            "email": user["email"],
            "phone": user["phone"],
            "app_metadata": user["app_metadata"],
            "user_metadata": user["user_metadata"],
            "role": user["role"],
            "aal": aal,
            "amr": amr,
            "session_id": session["id"],
            "is_anonymous": user["is_anonymous"],
        }
        if self.hook is not None:
            return self.sign(self.hook.customize(claims, method, ip_address), SortedKeys), exp
        return self.sign(claims), exp

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token or raise TokenError (no leeway on exp/nbf)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise TokenError(f"token is malformed: {error}") from error
        key, alg = self.key_for(header)
        try:
            claims = jwt.decode(token, key, algorithms=[alg], options=DECODE_OPTIONS)
        except jwt.InvalidSignatureError as error:
            raise TokenError("token signature is invalid: signature is invalid") from error
        except jwt.InvalidTokenError as error:
            raise TokenError(f"token is malformed: {error}") from error
        self.check_times(claims)
        for name in ("sub", "role", "session_id"):
            if claims.get(name) is not None and not isinstance(claims[name], str):
                raise TokenError(f"token has invalid claims: {name} must be a string")
        return claims

    def key_for(self, header: dict[str, Any]) -> tuple[Any, str]:
        """Pick the verification key: a trusted kid, else HS256 with the secret, else reject."""
        kid, alg = header.get("kid"), header.get("alg")
        key = self.keyring.verifying_key(kid) if isinstance(kid, str) else None
        if key is not None:
            return key.public_key, key.alg
        if alg == "HS256":
            return self.secret, "HS256"
        raise TokenError(
            "token is unverifiable: error while executing keyfunc: "
            f"unrecognized JWT kid {kid or ''} for algorithm {alg}"
        )

    def check_times(self, claims: dict[str, Any]) -> None:
        """Check exp and nbf against the emulator clock."""
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is not None and (not isinstance(exp, int | float) or now >= exp):
            raise TokenError("token has invalid claims: token is expired")
        if nbf is not None and (not isinstance(nbf, int | float) or now < nbf):
            raise TokenError("token has invalid claims: token is not valid yet")


def assurance(amr: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """CalculateAALAndAMR: aal2 once a second factor is among the methods; newest first."""
    aal = "aal2" if any(entry["method"] in AAL2_METHODS for entry in amr) else "aal1"
    return aal, sorted(amr, key=lambda entry: entry["timestamp"], reverse=True)


def api_key(role: str, secret: str) -> str:
    """Build an anon / service_role API key for a secret (the fixed ones for the dev secret)."""
    if secret == keys.JWT_SECRET:
        return keys.ANON_KEY if role == "anon" else keys.SERVICE_ROLE_KEY
    claims = {"iss": "supabase-demo", "role": role, "exp": 1983812996}
    return jwt.encode(claims, secret, "HS256")
