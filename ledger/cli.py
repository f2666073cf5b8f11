"""`callcontrol ledger ...`: operator commands. Amounts are typed in dollars ("25.00") and shown in $.

Exit codes: 0 done, 1 refused by the ledger (or drift found), 2 bad input, 3 ledger unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import select

from ledger.core import Ledger
from ledger.errors import BadAmount, BadId, BadInput, LedgerError, LedgerUnavailable
from ledger.journal import SEP
from ledger.keys import account_id_for
from ledger.money import fmt_cents, parse_dollars
from ledger.redisclient import connect_sync, is_cluster
from ledger.types import Balance

if TYPE_CHECKING:
    from ledger.sync import SyncWorker

T = TypeVar("T")
INPUT_ERRORS = (BadAmount, BadId, BadInput)


class Settings(Protocol):
    """What the ledger commands read from the host program's settings (callcontrol's Settings has
    these); the ledger never imports its host."""

    @property
    def redis_url(self) -> str: ...
    @property
    def ledger_partitions(self) -> int: ...
    @property
    def max_amount(self) -> int: ...
    @property
    def sqlalchemy_url(self) -> str: ...


OpenRedis = Callable[[Settings], AbstractContextManager[str]]


def _configured_redis(settings: Settings) -> AbstractContextManager[str]:
    if not settings.redis_url:
        raise LedgerUnavailable("no redis_url configured")
    return nullcontext(settings.redis_url)


_open_redis: OpenRedis = _configured_redis


def redis_url(settings: Settings) -> AbstractContextManager[str]:
    """A Redis URL for the command's duration: the host's `open_redis` (given to `register`) may start
    an embedded server; by default only a configured `redis_url` will do."""
    return _open_redis(settings)


# --- plumbing -------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _account(arg: str) -> str:
    """An account id, or FACILITY:+NUMBER."""
    facility, sep, number = arg.rpartition(":")
    if sep and number.startswith("+"):
        return account_id_for(facility, number)
    return arg


def _op_id(args: argparse.Namespace) -> str:
    return args.op_id or f"cli-{uuid.uuid4().hex}"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def with_ledger(settings: Settings, fn: Callable[[Ledger], Awaitable[T]]) -> T:
    with redis_url(settings) as url:
        cluster = is_cluster(url)

        async def go() -> T:
            led = await Ledger.connect(url, partitions=settings.ledger_partitions,
                                       max_amount=settings.max_amount, cluster=cluster)
            try:
                return await fn(led)
            finally:
                await led.close()

        return asyncio.run(go())


Handler = Callable[[argparse.Namespace, Settings], int]


def guarded(handler: Handler) -> Handler:
    """Turn ledger errors into a message on stderr and an exit code."""
    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except INPUT_ERRORS as exc:
            print(f"ledger: {exc.code}: {exc}", file=sys.stderr)
            return 2
        except LedgerUnavailable as exc:
            print(f"ledger: unavailable: {exc}", file=sys.stderr)
            return 3
        except LedgerError as exc:
            print(f"ledger: refused ({exc.code}): {exc}", file=sys.stderr)
            return 1
    return run


def show_balance(b: Balance) -> None:
    print(table(["account", "state", "posted", "held", "available"],
                [[b.account_id, b.state, fmt_cents(b.posted), fmt_cents(b.held), fmt_cents(b.available)]]))


def _sync_worker(args: argparse.Namespace, settings: Settings, url: str) -> SyncWorker:
    from ledger.sync import SyncWorker
    return SyncWorker(url, settings.sqlalchemy_url, partitions=settings.ledger_partitions,
                      claim_idle_ms=getattr(args, "claim_idle_ms", 30_000))


def _engine(settings: Settings) -> Any:
    from ledger.sql import make_engine, migrate
    migrate(settings.sqlalchemy_url)
    return make_engine(settings.sqlalchemy_url)


# --- handlers ---------------------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.sql import migrate
    migrate(settings.sqlalchemy_url)
    print(f"ledger tables at head on {settings.sqlalchemy_url.split('@')[-1]}")
    return 0


def cmd_open(args: argparse.Namespace, settings: Settings) -> int:
    async def go(led: Ledger) -> Balance:
        account = await led.open_account(_op_id(args), args.facility, args.number, args.owner)
        return await led.balance(account)
    show_balance(with_ledger(settings, go))
    return 0


def cmd_find(args: argparse.Namespace, settings: Settings) -> int:
    found = with_ledger(settings, lambda led: led.find_account(args.facility, args.number))
    if found is None:
        print(f"no account for {args.number} at {args.facility}", file=sys.stderr)
        return 1
    print(found)
    return 0


def cmd_balance(args: argparse.Namespace, settings: Settings) -> int:
    show_balance(with_ledger(settings, lambda led: led.balance(_account(args.account))))
    return 0


def cmd_deposit(args: argparse.Namespace, settings: Settings) -> int:
    cents = parse_dollars(args.amount)
    show_balance(with_ledger(settings, lambda led: led.deposit(
        _op_id(args), _account(args.account), cents, source=args.source, reference=args.reference)))
    return 0


def cmd_refund(args: argparse.Namespace, settings: Settings) -> int:
    cents = parse_dollars(args.amount)
    show_balance(with_ledger(settings, lambda led: led.refund(
        _op_id(args), _account(args.account), cents, reason=args.reason)))
    return 0


def cmd_adjust(args: argparse.Namespace, settings: Settings) -> int:
    cents = parse_dollars(args.delta, signed=True)
    show_balance(with_ledger(settings, lambda led: led.adjust(
        _op_id(args), _account(args.account), cents, reason=args.reason)))
    return 0


def cmd_freeze(args: argparse.Namespace, settings: Settings) -> int:
    show_balance(with_ledger(settings, lambda led: led.freeze(_op_id(args), _account(args.account),
                                                              reason=args.reason)))
    return 0


def cmd_unfreeze(args: argparse.Namespace, settings: Settings) -> int:
    show_balance(with_ledger(settings, lambda led: led.unfreeze(_op_id(args), _account(args.account))))
    return 0


def cmd_close(args: argparse.Namespace, settings: Settings) -> int:
    show_balance(with_ledger(settings, lambda led: led.close_account(_op_id(args), _account(args.account),
                                                                     reason=args.reason)))
    return 0


def cmd_block(args: argparse.Namespace, settings: Settings) -> int:
    async def go(led: Ledger) -> bool:
        await led.set_block(_op_id(args), args.facility, args.number, not args.unblock, source=args.source,
                            inmate_id=args.inmate)
        return await led.is_blocked(args.facility, args.number, args.inmate)
    blocked = with_ledger(settings, go)
    who = f" for inmate {args.inmate}" if args.inmate else ""
    print(f"{args.number} at {args.facility}{who}: {'blocked' if blocked else 'not blocked'}")
    return 0


def cmd_hold_list(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.reconcile import redis_holds
    only = _account(args.account) if args.account else None
    with redis_url(settings) as url:
        r = connect_sync(url)
        try:
            found = redis_holds(r, settings.ledger_partitions, pending_only=not args.all)
        finally:
            r.close()
    rows = [[h.account_id, h.hold_id, h.status, fmt_cents(h.amount), fmt_cents(h.captured),
             _when(int(h.expires_at * 1000)), "yes" if h.review else "", h.meta]
            for h in sorted(found.values(), key=lambda h: h.expires_at) if only in (None, h.account_id)]
    print(table(["account", "hold", "status", "amount", "captured", "lease ends (UTC)", "review", "meta"],
                rows))
    return 0


def cmd_reap(args: argparse.Namespace, settings: Settings) -> int:
    reaped = with_ledger(settings, lambda led: led.reap_expired())
    print(table(["account", "hold", "amount", "captured", "released"],
                [[h.account_id, h.hold_id, fmt_cents(h.amount), fmt_cents(h.captured),
                  fmt_cents(h.amount - h.captured)] for h in reaped]))
    print(f"{len(reaped)} expired hold(s) voided and flagged for review")
    return 0


def _drain(args: argparse.Namespace, settings: Settings, url: str) -> int:
    worker = _sync_worker(args, settings, url)
    try:
        return worker.run_once() if getattr(args, "once", False) else worker.drain()
    finally:
        worker.close()


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    with redis_url(settings) as url:
        if args.forever:
            from ledger.sync import SyncWorker
            worker = SyncWorker(url, settings.sqlalchemy_url, partitions=settings.ledger_partitions)
            stop = threading.Event()
            try:
                worker.run_forever(stop)
            except KeyboardInterrupt:
                stop.set()
            finally:
                worker.close()
            return 0
        n = _drain(args, settings, url)
    print(f"{n} journal entries written to SQL")
    return 0


def _statement_rows(settings: Settings, account: str, limit: int) -> list[Any]:
    from ledger.sql import transfers
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(transfers).where(transfers.c.account_id == account)
                                     .order_by(transfers.c.ver.desc()).limit(limit)).mappings())[::-1]
    finally:
        engine.dispose()


def cmd_statement(args: argparse.Namespace, settings: Settings) -> int:
    account = _account(args.account)
    if not args.no_sync:
        with redis_url(settings) as url:
            _drain(args, settings, url)
    rows = _statement_rows(settings, account, args.limit)
    print(table(["when (UTC)", "kind", "amount", "balance", "hold", "note", "operation"],
                [[_when(r["ts"]), r["kind"], fmt_cents(r["amount"]), fmt_cents(r["posted_after"]),
                  r["hold_id"] or "", r["note"] or r["reference"], r["op_id"]] for r in rows]))
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    """The account's last `--limit` journal entries in journal order: by stream id compared as numbers
    (ms, then sequence), not by the writers' clocks (`ts`) nor as text ("…-10" before "…-9")."""
    from ledger.journal import decode, sortable_id
    from ledger.sql import journal
    account = _account(args.account)
    if not args.no_sync:
        with redis_url(settings) as url:
            _drain(args, settings, url)
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            rows = sorted(conn.execute(select(journal).where(journal.c.scope == account)).mappings(),
                          key=lambda r: (sortable_id(r["stream_id"]), r["partition"]))
        rows = rows[-args.limit:] if args.limit > 0 else []
    finally:
        engine.dispose()
    out = []
    for r in rows:
        e = decode(r["partition"], r["stream_id"], r["entry"])
        detail = e.text1 if e.op != "hold" else e.text2
        out.append([_when(e.ts), e.op, e.hold_id, fmt_cents(e.dp) if e.dp else "", fmt_cents(e.posted),
                    fmt_cents(e.held), e.state, detail.replace(SEP, " "), e.op_id])
    print(table(["when (UTC)", "operation", "hold", "posted Δ", "posted", "held", "state", "detail", "op id"],
                out))
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.reconcile import reconcile
    with redis_url(settings) as url:
        if not args.no_sync:
            _drain(args, settings, url)
        engine = _engine(settings)
        r = connect_sync(url)
        try:
            drift = reconcile(r, engine, settings.ledger_partitions)
        finally:
            r.close()
            engine.dispose()
    for line in drift:
        print(f"DRIFT {line}")
    if drift:
        print(f"{len(drift)} difference(s) between Redis and SQL", file=sys.stderr)
        return 1
    print("Redis and SQL agree on every account and open hold")
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.core import DEFAULT_IDEMPOTENCY_TTL
    from ledger.reconcile import RebuildRefused, rebuild
    with redis_url(settings) as url:
        engine = _engine(settings)
        r = connect_sync(url)
        try:
            counts = rebuild(r, engine, settings.ledger_partitions, DEFAULT_IDEMPOTENCY_TTL, force=args.force)
        except RebuildRefused as exc:
            print(f"ledger: {exc}", file=sys.stderr)
            return 1
        finally:
            r.close()
            engine.dispose()
    print(table(["restored", "count"], [[k, v] for k, v in counts.items()]))
    return 0


# --- argument parsing ---------------------------------------------------------------------------------
def register(subparsers: Any, open_redis: OpenRedis | None = None) -> None:
    """Add `ledger ...` to the host's parser; `open_redis` yields its Redis URL (see redis_url)."""
    global _open_redis
    _open_redis = open_redis or _configured_redis
    ledger = subparsers.add_parser("ledger", help="AdvancePay ledger: accounts, holds, sync, reconcile")
    sub = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace, Settings], int], help_: str,
            op: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=guarded(handler))
        if op:
            p.add_argument("--op-id", help="operation id (retry with the same id); default random")
        return p

    acct_help = "account id, or FACILITY:+E164"
    add("migrate", cmd_migrate, "create or upgrade the ledger's SQL tables")
    p = add("open", cmd_open, "open an account for a called number at a facility", op=True)
    p.add_argument("facility")
    p.add_argument("number", help="called number, E.164 (+1...)")
    p.add_argument("--owner", default="", help="account holder's name")
    p = add("find", cmd_find, "print the account id of a number at a facility")
    p.add_argument("facility")
    p.add_argument("number")
    p = add("balance", cmd_balance, "posted, held and available funds")
    p.add_argument("account", help=acct_help)
    p = add("deposit", cmd_deposit, "add funds (dollars, e.g. 25.00)", op=True)
    p.add_argument("account", help=acct_help)
    p.add_argument("amount")
    p.add_argument("--source", default="cli", help="payment channel")
    p.add_argument("--reference", default="", help="payment reference")
    for name, handler, help_ in (("statement", cmd_statement, "posted movements from SQL, with balance"),
                                 ("history", cmd_history, "every journalled operation from SQL")):
        p = add(name, handler, help_)
        p.add_argument("account", help=acct_help)
        p.add_argument("--limit", type=int, default=50)
        p.add_argument("--no-sync", action="store_true", help="do not sync the journal first")
    p = add("refund", cmd_refund, "pay funds back to the family", op=True)
    p.add_argument("account", help=acct_help)
    p.add_argument("amount")
    p.add_argument("--reason", default="")
    p = add("adjust", cmd_adjust, "operator correction: signed dollars, reason required", op=True)
    p.add_argument("account", help=acct_help)
    p.add_argument("delta", help="signed dollars, e.g. 5.00 or -5.00")
    p.add_argument("--reason", required=True)
    p = add("freeze", cmd_freeze, "stop deposits, new holds and captures", op=True)
    p.add_argument("account", help=acct_help)
    p.add_argument("--reason", default="")
    p = add("unfreeze", cmd_unfreeze, "return a frozen account to active", op=True)
    p.add_argument("account", help=acct_help)
    p = add("close", cmd_close, "close an account (refund its balance first)", op=True)
    p.add_argument("account", help=acct_help)
    p.add_argument("--reason", default="")
    p = add("block", cmd_block, "block (or --unblock) a number at a facility", op=True)
    p.add_argument("facility")
    p.add_argument("number")
    p.add_argument("--unblock", action="store_true")
    p.add_argument("--inmate", default="", help="only this inmate's calls (default: the whole facility)")
    p.add_argument("--source", default="operator")
    hold = sub.add_parser("hold", help="holds")
    hold_sub = hold.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    p = hold_sub.add_parser("list", help="open holds (all accounts, or one)")
    p.set_defaults(func=guarded(cmd_hold_list))
    p.add_argument("account", nargs="?", help=acct_help)
    p.add_argument("--all", action="store_true", help="include recently resolved holds")
    add("reap", cmd_reap, "void holds whose lease has expired and flag them for review")
    p = add("sync", cmd_sync, "write the journal to SQL (until drained)")
    p.add_argument("--once", action="store_true", help="one batch only")
    p.add_argument("--forever", action="store_true", help="keep running (Ctrl-C stops)")
    p.add_argument("--claim-idle-ms", type=int, default=30_000, help="reclaim a dead worker's entries after")
    p = add("reconcile", cmd_reconcile, "compare Redis with SQL; exit 1 on any drift")
    p.add_argument("--no-sync", action="store_true", help="do not sync the journal first")
    p = add("rebuild", cmd_rebuild, "restore Redis from SQL after a Redis loss")
    p.add_argument("--force", action="store_true", help="even if Redis already holds accounts")
