"""`payments ...` commands for the host CLI (callcontrol/cli.py COMMAND_MODULES):

    payments sync [--forever]                  copy the payment trail journal into SQL
    payments reconcile [--since S] [--grace S] [--json] [--no-sync]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

OpenRedis = Callable[[Any], AbstractContextManager[str]]


def _configured_redis(settings: Any) -> AbstractContextManager[str]:
    return nullcontext(str(settings.redis_url))


_open_redis: OpenRedis = _configured_redis


def parse_since(text: str, now: float) -> float:
    """``--since``: an ISO date/time (UTC unless it says), or a duration back from now (``36h``, ``7d``)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cmd_sync(args: argparse.Namespace, settings: Any) -> int:
    from payments.trail_sync import TrailSync

    with _open_redis(settings) as url:
        worker = TrailSync(url, settings.sqlalchemy_url)
        try:
            if args.forever:
                stop = threading.Event()
                try:
                    worker.run_forever(stop)
                except KeyboardInterrupt:
                    stop.set()
                return 0
            print(f"payments sync: {worker.drain()} trail entries copied")
        finally:
            worker.close()
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Any) -> int:
    from ledger.sql import make_engine
    from ledger.sql import migrate as ledger_migrate
    from payments.reconcile import reconcile
    from payments.sql import migrate

    now = time.time()
    since = parse_since(args.since, now) if args.since else 0.0
    ledger_migrate(settings.sqlalchemy_url)
    migrate(settings.sqlalchemy_url)
    if not args.no_sync:            # bring both SQL mirrors up to date with Redis first
        from ledger.sync import SyncWorker
        from payments.trail_sync import sync_once

        with _open_redis(settings) as url:
            worker = SyncWorker(url, settings.sqlalchemy_url,
                                partitions=int(getattr(settings, "ledger_partitions", 16)))
            try:
                worker.drain()
            finally:
                worker.close()
            sync_once(url, settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        rep = reconcile(engine, now, since=since, grace=args.grace)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(rep.as_dict(), indent=2))
    else:
        print(f"checked: {rep.checked_attempts} phone attempts, {rep.checked_stored} stored-card charges, "
              f"{rep.checked_deposits} card deposits")
        for p in rep.problems:
            print(p.line())
        print("OK: every approved charge has its deposit and every deposit its charge" if not rep.problems
              else f"{len(rep.problems)} problem(s)")
    return 1 if rep.problems else 0


def register(subparsers: Any, open_redis: OpenRedis | None = None) -> None:
    """Add `payments ...` to the host's parser; `open_redis` yields its Redis URL."""
    global _open_redis
    _open_redis = open_redis or _configured_redis
    from payments.reconcile import GRACE_SECONDS

    top = subparsers.add_parser("payments", help="card payments: trail sync, reconcile with the ledger")
    sub = top.add_subparsers(dest="payments_command", metavar="ACTION", required=True)
    p = sub.add_parser("sync", help="copy the payment trail journal (Redis) into SQL")
    p.add_argument("--forever", action="store_true", help="keep running (a worker next to `ledger sync`)")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser("reconcile", help="gateway outcomes vs ledger deposits; non-zero exit on a problem",
                       description="Compare approved card charges with ledger deposits. Exit 1 on a charge "
                                   "without deposit, a deposit without charge, or an attempt stuck in "
                                   "authorizing/unknown past the grace period.")
    p.add_argument("--since", default="", help="ISO time or duration back (36h, 7d); default everything")
    p.add_argument("--grace", type=float, default=GRACE_SECONDS,
                   help=f"seconds an attempt may stay in flight (default {GRACE_SECONDS})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-sync", action="store_true", help="do not drain the Redis journals into SQL first")
    p.set_defaults(func=cmd_reconcile)


def main(argv: list[str] | None = None) -> int:      # pragma: no cover - the host CLI is the entry point
    print("use `callcontrol payments ...`", file=sys.stderr)
    return 2
