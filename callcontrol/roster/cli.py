"""`callcontrol roster import FACILITY FILE.csv` and `callcontrol roster set-pin FACILITY INMATE`."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from callcontrol.platform.config import Settings
from callcontrol.policy import Policy, hash_pin


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("roster", help="inmate rosters from the jail-management export")
    roster = parser.add_subparsers(dest="roster_command", metavar="COMMAND", required=True)
    imp = roster.add_parser("import", help="import a facility's CSV export (all rows or none)")
    imp.add_argument("facility")
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=import_command)
    pin = roster.add_parser("set-pin", help="set an inmate's PIN (prompted, never echoed; only its hash "
                                            "is stored)")
    pin.add_argument("facility")
    pin.add_argument("inmate")
    pin.set_defaults(func=set_pin_command)


def _digits(settings: Settings, facility: str) -> int:
    fac = Policy.load(Path(settings.facility_dir) / "policy").facility(facility)
    return fac.inmate_number_digits if fac else 4


def import_command(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.roster import store
    from ledger.sql import make_engine

    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"roster: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        rows = store.parse_csv(text, _digits(settings, args.facility))
    except store.RosterError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        print(f"roster: {len(exc.problems)} bad row(s); nothing imported", file=sys.stderr)
        return 1
    store.migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        count = store.import_rows(engine, args.facility, rows)
    finally:
        engine.dispose()
    released = sum(not r.active for r in rows)
    print(f"roster: {args.facility}: {count} inmate(s) imported ({released} inactive); running controllers "
          "pick it up within roster_poll_seconds")
    return 0


def set_pin_command(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.roster import store
    from ledger.sql import make_engine

    pin = getpass.getpass("PIN: ")
    if pin != getpass.getpass("PIN again: "):
        print("roster: the PINs differ; nothing changed", file=sys.stderr)
        return 1
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        print("roster: a PIN is 4 to 12 digits; nothing changed", file=sys.stderr)
        return 1
    store.migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        done = store.set_pin(engine, args.facility, args.inmate, hash_pin(pin))
    finally:
        engine.dispose()
    if not done:
        print(f"roster: {args.facility} has no inmate {args.inmate} in SQL; import them first",
              file=sys.stderr)
        return 1
    print(f"roster: PIN set for {args.facility} inmate {args.inmate}")
    return 0
