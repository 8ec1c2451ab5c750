"""A software WebAuthn authenticator for tests: what a browser and a platform authenticator
together hand back from ``navigator.credentials.create()`` and ``.get()``.

Keys are real ES256 (P-256) keys made with ``cryptography``; attestation is ``none``; every
credential is discoverable (it keeps the user handle and answers requests with no
``allowCredentials``); each assertion raises the credential's sign count by one. The answers
are the JSON of ``PublicKeyCredential.toJSON()`` (base64url without padding), ready to send
as ``credential`` to ``/passkeys/…/verify``.

Every refusal a relying party must make can be produced: pass ``origin``, ``rp_id`` or
``challenge`` to sign for the wrong one, ``user_present=False`` or ``user_verified=False`` to
clear the flags, ``sign_count`` to send a count that does not grow, ``bad_signature=True`` to
sign with a key the server never saw, ``user_handle`` to claim another person, and
``credential_id`` to pick a credential (for example one made with ``make_credential`` and
never registered).

    authenticator = Authenticator("http://localhost:3000")
    credential = authenticator.create(registration["options"])
    assertion = authenticator.get(authentication["options"])
"""

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
ES256 = -7
NIL_AAGUID = bytes(16)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn's JSON forms use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cose_key(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The COSE_Key of a P-256 public key (kty EC2, alg ES256, crv P-256, x, y)."""
    numbers = public_key.public_numbers()
    return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                        -3: numbers.y.to_bytes(32, "big")})


@dataclass
class Credential:
    """One discoverable credential the authenticator holds."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0
    user_name: str = ""

    @property
    def id(self) -> str:
        """The credential id as the JSON ``id`` field (base64url)."""
        return b64url(self.credential_id)


@dataclass
class Authenticator:
    """A platform authenticator behind a browser on ``origin``; see the module docstring."""

    origin: str
    aaguid: bytes = NIL_AAGUID
    backup_eligible: bool = False
    backed_up: bool = False
    transports: tuple[str, ...] = ("internal",)
    credentials: dict[bytes, Credential] = field(default_factory=dict)

    # --- registration ------------------------------------------------------------------------

    def make_credential(self, rp_id: str, user_handle: bytes, user_name: str = "") -> Credential:
        """A new key pair and credential id, kept by the authenticator (no server involved)."""
        credential = Credential(secrets.token_bytes(32), ec.generate_private_key(ec.SECP256R1()),
                                rp_id, user_handle, 0, user_name)
        self.credentials[credential.credential_id] = credential
        return credential

    def create(self, options: dict[str, Any], *, origin: str | None = None,
               rp_id: str | None = None, challenge: str | None = None,
               user_present: bool = True, user_verified: bool = True,
               client_type: str = "webauthn.create", attestation_format: str = "none",
               attestation_statement: dict | None = None,
               reuse: Credential | None = None) -> dict[str, Any]:
        """Answer creation options (the JSON ``publicKey`` member) with a new credential, or
        with ``reuse`` (an existing one, ignoring ``excludeCredentials``: a misbehaving
        client registering the same credential twice)."""
        rp_id = rp_id if rp_id is not None else options["rp"]["id"]
        excluded = {from_b64url(item["id"]) for item in options.get("excludeCredentials", [])}
        if reuse is None and excluded & set(self.credentials):
            raise ValueError("InvalidStateError: this authenticator already holds an excluded "
                             "credential")
        credential = reuse or self.make_credential(rp_id, from_b64url(options["user"]["id"]),
                                                   options["user"].get("name", ""))
        client_data = self.client_data(client_type, challenge or options["challenge"], origin)
        attested = (self.aaguid + struct.pack(">H", len(credential.credential_id))
                    + credential.credential_id + cose_key(credential.private_key.public_key()))
        flags = self.flags(user_present, user_verified, self.backup_eligible) | AT
        auth_data = self.authenticator_data(rp_id, flags, 0) + attested
        attestation = cbor2.dumps({"fmt": attestation_format,
                                   "attStmt": attestation_statement or {},
                                   "authData": auth_data})
        return {"id": credential.id, "rawId": credential.id, "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data),
                             "attestationObject": b64url(attestation),
                             "transports": list(self.transports)},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}

    # --- authentication ----------------------------------------------------------------------

    def get(self, options: dict[str, Any], *, credential_id: str | bytes | None = None,
            origin: str | None = None, rp_id: str | None = None, challenge: str | None = None,
            user_present: bool = True, user_verified: bool = True,
            sign_count: int | None = None, bad_signature: bool = False,
            user_handle: bytes | None = None, client_type: str = "webauthn.get",
            backup_eligible: bool | None = None) -> dict[str, Any]:
        """Answer request options with an assertion from a credential for their RP ID (the
        newest, unless ``credential_id`` picks one); the sign count goes up by one."""
        credential = self.pick(options.get("rpId", ""), credential_id)
        rp_id = rp_id if rp_id is not None else credential.rp_id
        if sign_count is None:
            credential.sign_count += 1
            sign_count = credential.sign_count
        eligible = self.backup_eligible if backup_eligible is None else backup_eligible
        auth_data = self.authenticator_data(
            rp_id, self.flags(user_present, user_verified, eligible), sign_count)
        client_data = self.client_data(client_type, challenge or options["challenge"], origin)
        key = ec.generate_private_key(ec.SECP256R1()) if bad_signature \
            else credential.private_key
        signature = key.sign(auth_data + hashlib.sha256(client_data).digest(),
                             ec.ECDSA(hashes.SHA256()))
        handle = credential.user_handle if user_handle is None else user_handle
        return {"id": credential.id, "rawId": credential.id, "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data),
                             "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature), "userHandle": b64url(handle)},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}

    def pick(self, rp_id: str, credential_id: str | bytes | None) -> Credential:
        """The credential to assert with: the one asked for, else the newest for the RP ID."""
        if credential_id is not None:
            raw = from_b64url(credential_id) if isinstance(credential_id, str) else credential_id
            return self.credentials[raw]
        matching = [c for c in self.credentials.values() if c.rp_id == rp_id]
        if not matching:
            raise LookupError(f"NotAllowedError: no credential for RP ID {rp_id!r}")
        return matching[-1]

    # --- the signed parts --------------------------------------------------------------------

    def client_data(self, client_type: str, challenge: str, origin: str | None) -> bytes:
        """CollectedClientData as the browser serialises it."""
        return json.dumps({"type": client_type, "challenge": challenge,
                           "origin": origin or self.origin, "crossOrigin": False},
                          separators=(",", ":")).encode()

    def flags(self, user_present: bool, user_verified: bool, backup_eligible: bool) -> int:
        """The flags byte: UP, UV, BE as given, BS when the authenticator says it is backed up."""
        return ((UP if user_present else 0) | (UV if user_verified else 0)
                | (BE if backup_eligible else 0) | (BS if self.backed_up else 0))

    @staticmethod
    def authenticator_data(rp_id: str, flags: int, sign_count: int) -> bytes:
        """rpIdHash, flags and the big-endian sign count (attested data is appended after)."""
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + \
            struct.pack(">I", sign_count)
