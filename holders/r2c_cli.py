"""`callcontrol holders r2c create|list|cancel`: support staff make and manage Request2Call requests on a
holder's behalf, through the same functions the web and the 800 line use (holders/request2call.py)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from holders import cli as base
from holders.request2call import DEFAULT_DAYS, CallRequests


def requests_for(settings: Any, engine: Any) -> CallRequests:
    """The facility switch comes from the facility files (an unknown facility counts as switched off)."""
    from pathlib import Path

    from rating import load_catalog

    catalog = load_catalog(Path(settings.facility_dir))

    def enabled(facility_id: str) -> bool:
        try:
            return bool(catalog.facility(facility_id).request2call)
        except Exception:
            return False

    days = int(getattr(settings, "call_request_days", DEFAULT_DAYS))
    return CallRequests(engine, days=days, enabled=enabled)


def cmd_r2c(args: argparse.Namespace, settings: Any) -> int:
    from holders.sql import make_engine, migrate
    from notify.sql import migrate as notify_migrate

    migrate(settings.sqlalchemy_url)
    notify_migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        reqs = requests_for(settings, engine)
        actor = base._actor(args)
        if args.r2c_action == "create":
            found = [reqs.create(actor, args.holder, args.facility, args.inmate, args.number)]
        elif args.r2c_action == "cancel":
            found = [reqs.cancel(actor, args.request)]
        else:
            found = reqs.of_holder(actor, args.holder, pending_only=args.pending)
    finally:
        engine.dispose()
    rows = [[r.request_id, r.facility_id, r.inmate_id, r.number_e164, r.status, base._when(r.created_ts),
             base._when(r.expires_ts)] for r in found]
    base._emit(args, [dataclasses.asdict(r) for r in found],
               base.table(["request", "facility", "inmate", "number", "status", "created", "expires"], rows))
    return 0


def register(add: Callable[[str, Any, str], argparse.ArgumentParser]) -> None:
    p = add("r2c", cmd_r2c, "Request2Call: ask an inmate to call a holder's verified number")
    sub = p.add_subparsers(dest="r2c_action", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="a new pending request (one per holder and inmate)")
    c.add_argument("holder")
    c.add_argument("facility")
    c.add_argument("inmate", help="the inmate's number at the facility")
    c.add_argument("number", help="the holder's verified number, E.164")
    ls = sub.add_parser("list", help="a holder's requests, newest first")
    ls.add_argument("holder")
    ls.add_argument("--pending", action="store_true", help="only pending, unexpired ones")
    x = sub.add_parser("cancel", help="cancel a pending request")
    x.add_argument("request")
    for q in (c, ls, x):        # also accepted after the action; SUPPRESS keeps a value given before it
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        q.add_argument("--staff", default=argparse.SUPPRESS)
