"""``python -m emulator keys list|rotate|revoke KID``: signing keys in the database file.

Works on the file directly, so it also works while the emulator runs: the server reads key
states on every use. On a hosted project the same actions live in the dashboard (Project
Settings → JWT Keys) and the Management API.
"""

import argparse
import os
import sys
import time

from . import users
from .config import from_environ, load
from .db import Database
from .signing_keys import SigningKey, SigningKeyError, SigningKeys


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the keys subcommand and its options."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator keys",
        description="List, rotate or revoke the emulator's JWT signing keys.")
    parser.add_argument("--database", help="SQLite file (default: EMULATOR_DATABASE or "
                        ".emulator/auth.sqlite3)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every key with its state")
    actions.add_parser("rotate", help="standby → current, current → previously used, "
                       "new standby")
    revoke = actions.add_parser("revoke", help="previously used → revoked")
    revoke.add_argument("kid")
    return parser.parse_args(argv)


def describe(key: SigningKey) -> str:
    """One line per key: kid, algorithm, state, last change."""
    return (f"{key.kid:<38} {key.alg:<6} {key.state.replace('_', ' '):<16} "
            f"{users.timestamp(key.updated_at)}")


def run(keyring: SigningKeys, args: argparse.Namespace) -> str:
    """Do the action; return what to print."""
    if args.action == "rotate":
        current = keyring.rotate()
        return f"Rotated: {current.kid} is now the current key.\n" + listing(keyring)
    if args.action == "revoke":
        revoked = keyring.revoke(args.kid)
        return f"Revoked {revoked.kid}: tokens signed with it no longer verify.\n" + \
            listing(keyring)
    return listing(keyring)


def listing(keyring: SigningKeys) -> str:
    """The table of keys."""
    header = f"{'kid':<38} {'alg':<6} {'state':<16} changed"
    return "\n".join([header, *(describe(key) for key in keyring.all())])


def main(argv: list[str]) -> int:
    """Open the database, make sure it has keys, act, print; 1 on a refused action."""
    args = parse_args(argv)
    path = args.database or load(from_environ(os.environ))["DATABASE"]
    database = Database(path)
    try:
        keyring = SigningKeys(database, time.time)
        keyring.ensure()
        print(run(keyring, args))
    except SigningKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        database.close()
    return 0
