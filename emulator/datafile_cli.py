"""``python -m emulator export FILE`` and ``python -m emulator import FILE`` (``-``: stdio).

Both work on the database file directly (``EMULATOR_DATABASE`` or ``--database``), so they
also work while the emulator runs: SQLite serialises the writes.
"""

import argparse
import json
import os
import sys

from . import close_app, create_app
from .config import from_environ
from .datafile import DataFileError, export_data, import_data, read_file, write_file


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the command, the file and the database option."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database", help="SQLite file (default: EMULATOR_DATABASE or "
                        ".emulator/auth.sqlite3)")
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Export or import the emulator's users, "
        "identities and stand-in accounts as a data file (see emulator/README.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("export", parents=[common],
                        help="write every user and stand-in account to FILE") \
        .add_argument("file", help="where to write the data file (- for standard output)")
    commands.add_parser("import", parents=[common],
                        help="add or replace the users and accounts in FILE") \
        .add_argument("file", help="the data file to read (- for standard input)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run export or import; 1 with a message on a file that cannot be imported."""
    args = parse_args(argv)
    settings = {**from_environ(os.environ), "SEED": None}  # a seed is for serving only
    if args.database:
        settings["DATABASE"] = args.database
    app = create_app(settings)
    try:
        with app.app_context():
            if args.command == "export":
                return export(args.file, app.config["CLOCK"]())
            return load(args.file)
    finally:
        close_app(app)


def export(path: str, now: float) -> int:
    """Write the data file; say how much it holds on stderr."""
    data = export_data(now)
    if path == "-":
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        write_file(path, data)
    print(f"Exported {len(data['users'])} user(s) and {len(data['stand_in_accounts'])} "
          f"stand-in account(s) to {path}", file=sys.stderr)
    return 0


def load(path: str) -> int:
    """Import the data file in one transaction, or nothing and a message naming the problem."""
    try:
        data = json.load(sys.stdin) if path == "-" else read_file(path)
        counts = import_data(data)
    except (OSError, json.JSONDecodeError, DataFileError) as error:
        print(f"Cannot import {path}: {error}", file=sys.stderr)
        return 1
    print(f"Imported {counts['users']} user(s) and {counts['stand_in_accounts']} stand-in "
          f"account(s) from {path}", file=sys.stderr)
    return 0
