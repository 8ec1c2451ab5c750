"""Fixed development keys for the emulator.

These values are PUBLIC ON PURPOSE, like the demo keys ``supabase start`` prints: they
exist so that a local setup works without configuration. Never use them anywhere real.
"""

JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105 - public

#: HS256 JWTs signed with JWT_SECRET (iss "supabase-demo", exp in 2032), as `supabase start` has.
ANON_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9."
    "CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
)
SERVICE_ROLE_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0."
    "EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
)

#: The opaque API keys ``supabase start`` prints (the CLI's fixed local values): the
#: publishable key acts as ``anon``, the secret key as ``service_role`` (see gateway.py).
PUBLISHABLE_KEY = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"
SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"  # noqa: S105 - public

#: The EC P-256 key that signs ES256 access tokens (generated once for this repository).
JWT_PRIVATE_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "EF3-o-Oc_9Y_PoHzHY1wek0WBrt1SwVmQpny9YaP774",
    "y": "H2XEy7FJJcBNAGL3n68dRRu5uM6DQFITlASLCCYdI-Q",
    "d": "ftrmH3u5a4eLquvVtOJzz5zpHSe16g-sZZgTdLBISko",  # noqa: S105 - dev key, public
    "kid": "emulator-dev-es256-1",
    "alg": "ES256",
    "use": "sig",
    "key_ops": ["sign", "verify"],
}
