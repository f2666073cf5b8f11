"""`callcontrol holders refund` and `callcontrol accounts sweep|owed`: support refunds, the daily
inactivity sweep, and what is owed by check. The host hands in the gateway and the notice sink (holders
imports neither callcontrol nor notify).

Exit codes as the other holders commands: 0 done, 1 not found, 2 bad input or refused, 3 unavailable
or a refund left to re-run (calls still holding money, an unknown processor answer).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Engine, select

from holders import cli as base
from holders.errors import BadInput, Unavailable
from holders.inactivity import Notices, Rules, Sweep
from holders.refunds import Refunds, owed
from holders.sql.schema import holder_refunds
from ledger import Ledger
from ledger.money import fmt_cents
from ledger.redisclient import is_cluster
from payments.gateway import PaymentGateway

GatewayFactory = Callable[[Any], PaymentGateway | None]
NoticesFactory = Callable[[Engine], Notices]
_gateway: GatewayFactory = lambda settings: None       # noqa: E731 - replaced by the host's wiring
_notices: NoticesFactory | None = None


@contextmanager
def _engine(settings: Any) -> Iterator[Engine]:
    from holders.sql import make_engine, migrate
    migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        yield engine
    finally:
        engine.dispose()


async def _with_refunds(settings: Any, engine: Engine, body: Callable[[Refunds, Ledger], Any]) -> Any:
    gateway = _gateway(settings)
    if gateway is None:
        raise Unavailable("no payment_gateway configured: card refunds need the processor")
    with base._open_redis(settings) as url:
        led = await Ledger.connect(url, partitions=settings.ledger_partitions,
                                   max_amount=settings.max_amount, cluster=is_cluster(url))
        try:
            refunds = Refunds(engine, led, gateway, sync=lambda: base._sync(settings))
            return await body(refunds, led)
        finally:
            await led.close()


def cmd_refund(args: argparse.Namespace, settings: Any) -> int:
    with _engine(settings) as engine:
        rid = args.request_id
        if not rid:          # resume this account's unfinished request, else a new one
            with engine.connect() as conn:
                rid = conn.execute(select(holder_refunds.c.request_id).where(
                    holder_refunds.c.in_flight == args.account)).scalar() or "rf-" + secrets.token_hex(8)
        res = asyncio.run(_with_refunds(settings, engine, lambda r, _: r.request(
            base._actor(args), args.holder, args.account, rid, close=args.close)))
    lines = [f"{p.seq}. {p.method:<5} {fmt_cents(p.amount):>10}  {p.state:<8} {p.charge_id or p.reason}"
             for p in res.parts]
    base._emit(args, {"request_id": res.request_id, "state": res.state, "amount_cents": res.amount,
                      "to_cards_cents": res.to_cards, "by_check_cents": res.by_check,
                      "parts": [p.__dict__ for p in res.parts]},
               f"refund {res.request_id}: {res.state}, {fmt_cents(res.amount)} "
               f"({fmt_cents(res.to_cards)} to cards, {fmt_cents(res.by_check)} by check)\n"
               + "\n".join(lines))
    return 0 if res.state == "done" else 3


def cmd_sweep(args: argparse.Namespace, settings: Any) -> int:
    from rating.catalog import load_catalog
    try:
        today = date.fromisoformat(args.today) if args.today else None
    except ValueError:
        raise BadInput(f"--today: not a date YYYY-MM-DD: {args.today!r}") from None
    rules = {f.id: Rules(f.tz, f.inactivity_days) for f in load_catalog(settings.facility_dir).facilities}
    with _engine(settings) as engine:
        notices = _notices(engine) if _notices is not None else None
        report = asyncio.run(_with_refunds(settings, engine, lambda r, _: Sweep(
            engine, r, rules, notices=notices, sync=lambda: base._sync(settings)).run(today)))
    base._emit(args, report.__dict__,
               f"noticed {len(report.noticed)}, refunded and closed {len(report.refunded)}, "
               f"to re-run {len(report.pending)}, skipped {len(report.skipped)}"
               + "".join(f"\n  skipped {a}: {why}" for a, why in report.skipped))
    return 3 if report.pending else 0


def cmd_owed(args: argparse.Namespace, settings: Any) -> int:
    with _engine(settings) as engine:
        found = owed(engine)
    headers = ["request", "part", "account", "facility", "number", "payee", "address", "amount", "reason",
               "since (UTC)"]
    rows = [[o.request_id, str(o.seq), o.account_id, o.facility_id, o.number, o.payee_name,
             o.payee_address.replace("\n", ", ") or "(no address)", fmt_cents(o.amount), o.reason,
             base._when(o.since_ts)] for o in found]
    if args.csv:
        out = csv.writer(sys.stdout)
        out.writerow([*headers[:7], "amount_cents", *headers[8:]])
        for o, r in zip(found, rows, strict=True):
            out.writerow([*r[:7], o.amount, *r[8:]])
        return 0
    base._emit(args, [o.__dict__ for o in found],
               base.table(headers, rows) + f"\n{len(found)} owed, {fmt_cents(sum(o.amount for o in found))}")
    return 0


def register(subparsers: Any, add: Callable[..., argparse.ArgumentParser], *,
             gateway: GatewayFactory | None, notices: NoticesFactory | None) -> None:
    """`holders refund` through the holders parser's `add`; `accounts ...` as a command of its own."""
    global _gateway, _notices
    if gateway is not None:
        _gateway = gateway
    _notices = notices
    p = add("refund", cmd_refund, "refund the available balance to the cards it came from (rest by check)")
    p.add_argument("holder")
    p.add_argument("account", help="the account id (ap_...)")
    p.add_argument("--close", action="store_true", help="close the account afterwards")
    p.add_argument("--request-id", default="", help="resume or name the request (default: resume or new)")
    top = subparsers.add_parser("accounts", help="inactivity sweep; refunds owed by check")
    sub = top.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    for name, handler, help_ in (("sweep", cmd_sweep, "the daily 180-day inactivity sweep"),
                                 ("owed", cmd_owed, "refunds owed by check")):
        q: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        q.set_defaults(func=base.guarded(handler))
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.add_argument("--staff", default="", help="who is acting (default cli:<login>)")
        if name == "sweep":
            q.add_argument("--today", default="", help="local date YYYY-MM-DD (default: today per facility)")
        else:
            q.add_argument("--csv", action="store_true", help="CSV for the check run")
