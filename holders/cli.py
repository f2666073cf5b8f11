"""`callcontrol holders ...`: support staff find holders, read their accounts and history, and act on
their behalf (create, claim, verify). `--json` for scripts.

Exit codes: 0 done, 1 not found, 2 bad input or refused, 3 unavailable (database, Redis, code sender).
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, Protocol

from holders.access import Actor
from holders.errors import BadInput, HolderError, NotFound, Unavailable
from holders.ledgerport import BlockingLedger
from holders.profile import Holder
from holders.registry import Registry
from holders.sender import CHANNELS, sender_for
from ledger import LedgerError
from ledger.money import fmt_cents
from ledger.redisclient import is_cluster


class Settings(Protocol):
    """What these commands read from the host's settings; holders never import the host."""

    @property
    def redis_url(self) -> str: ...
    @property
    def sqlalchemy_url(self) -> str: ...
    @property
    def ledger_partitions(self) -> int: ...
    @property
    def max_amount(self) -> int: ...
    @property
    def holder_code_secret(self) -> str: ...
    @property
    def holder_code_sender(self) -> str: ...


OpenRedis = Callable[[Any], AbstractContextManager[str]]


def _configured_redis(settings: Settings) -> AbstractContextManager[str]:
    if not settings.redis_url:
        raise Unavailable("no redis_url configured")
    return nullcontext(settings.redis_url)


_open_redis: OpenRedis = _configured_redis


@dataclasses.dataclass(frozen=True)
class PaymentMethod:
    brand: str
    last4: str
    expiry: str      # MM/YY


def payment_methods(settings: Settings, holder_id: str) -> list[PaymentMethod]:
    """The holder's stored cards as support may see them: brand, last 4 and expiry only."""
    import payments.sql
    from payments.methods import stored_methods

    payments.sql.migrate(settings.sqlalchemy_url)
    engine = payments.sql.make_engine(settings.sqlalchemy_url)
    try:
        return [PaymentMethod(m.brand, m.last4, f"{m.exp_month:02d}/{m.exp_year % 100:02d}")
                for m in stored_methods(engine, holder_id)]
    finally:
        engine.dispose()


@contextmanager
def registry(settings: Settings, *, ledger: bool = False) -> Iterator[Registry]:
    from holders.sql import make_engine, migrate
    migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    led: BlockingLedger | None = None
    try:
        with (_open_redis(settings) if ledger else nullcontext("")) as url:
            if url:
                led = BlockingLedger(url, partitions=settings.ledger_partitions,
                                     max_amount=settings.max_amount, cluster=is_cluster(url))
            yield Registry(engine, secret=settings.holder_code_secret,
                           sender=sender_for(settings.holder_code_sender, settings), ledger=led)
    finally:
        if led is not None:
            led.close()
        engine.dispose()


def _actor(args: argparse.Namespace) -> Actor:
    return Actor.support(args.staff or f"cli:{getpass.getuser()}")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _profile(h: Holder) -> str:
    return "\n".join(f"{k:<10} {v}" for k, v in (
        ("holder", h.holder_id), ("name", h.name), ("email", h.email), ("mobile", h.mobile),
        ("language", h.language), ("time zone", h.time_zone), ("status", h.status),
        ("created", _when(h.created_ts) + " UTC")))


def table(headers: list[str], rows: list[list[str]]) -> str:
    cells = [headers, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


# --- handlers ---------------------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    with registry(settings) as reg:
        h = reg.create(_actor(args), name=args.name, email=args.email, mobile=args.mobile,
                       language=args.language, time_zone=args.time_zone)
    _emit(args, dataclasses.asdict(h), _profile(h))
    return 0


def cmd_find(args: argparse.Namespace, settings: Settings) -> int:
    with registry(settings) as reg:
        if args.email:
            one = reg.find_by_email(_actor(args), args.email)
            found = [one] if one else []
        else:
            found = reg.find_by_number(_actor(args), args.number)
    if not found:
        print("holders: no holder found", file=sys.stderr)
        return 1
    _emit(args, [dataclasses.asdict(h) for h in found],
          table(["holder", "name", "email", "mobile", "status"],
                [[h.holder_id, h.name, h.email, h.mobile, h.status] for h in found]))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    actor = _actor(args)
    with registry(settings, ledger=True) as reg:
        h = reg.get(actor, args.holder)
        rows: list[dict[str, Any]] = []
        for link, b in reg.balances(actor, h.holder_id):
            row: dict[str, Any] = {"account": link.account_id, "facility": link.facility_id,
                                   "number": link.number, "verified_at": _when(link.verified_ts),
                                   "verified": reg.verified(actor, h.holder_id, link.account_id)}
            if b is None:
                row.update(state="missing", posted=None, held=None, available=None)
            else:
                row.update(state=b.state, posted=b.posted, held=b.held, available=b.available)
            rows.append(row)
    methods = payment_methods(settings, h.holder_id)
    data = {"holder": dataclasses.asdict(h), "accounts": rows,
            "payment_methods": [dataclasses.asdict(m) for m in methods]}

    def money(v: int | None) -> str:
        return "-" if v is None else fmt_cents(v)

    text = "\n\n".join([
        _profile(h),
        table(["facility", "number", "account", "verified", "state", "posted", "held", "available"],
              [[r["facility"], r["number"], r["account"],
                "yes " + r["verified_at"] if r["verified"] else "no",
                r["state"], money(r["posted"]), money(r["held"]), money(r["available"])] for r in rows])
        if rows else "accounts: none",
        table(["brand", "last 4", "expiry"], [[m.brand, m.last4, m.expiry] for m in methods])
        if methods else "payment methods: none"])
    _emit(args, data, text)
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.sql import migrate
    migrate(settings.sqlalchemy_url)         # history reads the ledger's tables
    if not args.no_sync:
        _sync(settings)
    with registry(settings) as reg:
        found = reg.history(_actor(args), args.holder, limit=args.limit, offset=(args.page - 1) * args.limit)
    _emit(args, [dataclasses.asdict(e) for e in found],
          table(["when (UTC)", "account", "kind", "amount", "detail"],
                [[_when(e.ts_ms), e.account_id, e.kind, fmt_cents(e.amount), e.detail] for e in found])
          + f"\npage {args.page}, {len(found)} item(s)")
    return 0


def _sync(settings: Settings) -> None:
    """The ledger's SQL copy lags its journal: drain it first, as `ledger statement` does."""
    from ledger.sync import SyncWorker
    with _open_redis(settings) as url:
        worker = SyncWorker(url, settings.sqlalchemy_url, partitions=settings.ledger_partitions)
        try:
            worker.drain()
        finally:
            worker.close()


def cmd_claim(args: argparse.Namespace, settings: Settings) -> int:
    with registry(settings) as reg:
        code_id = reg.claim(_actor(args), args.holder, args.facility, args.number, args.channel)
    _emit(args, {"code_id": code_id, "sent_to": args.number, "channel": args.channel},
          f"a code was sent to {args.number} by {args.channel}; it expires in 10 minutes")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """The code is read from the terminal (or stdin), never from argv: argv shows in `ps` and history."""
    code = (getpass.getpass("code: ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
    with registry(settings, ledger=True) as reg:
        link = reg.verify(_actor(args), args.holder, args.facility, args.number, code)
    _emit(args, dataclasses.asdict(link),
          f"verified: {link.number} at {link.facility_id} ({link.account_id}) belongs to {link.holder_id}")
    return 0


# --- AutoReload -------------------------------------------------------------------------------------
def _autoreload_view(st: Any) -> tuple[dict[str, Any], str]:
    if st is None:
        return {"autoreload": None}, "AutoReload: never set"
    data = dataclasses.asdict(st)
    text = "\n".join(f"{k:<10} {v}" for k, v in (
        ("account", st.account_id), ("enabled", "yes" if st.enabled else "no"),
        ("threshold", fmt_cents(st.threshold_cents)), ("amount", fmt_cents(st.amount_cents)),
        ("method", st.method_id), ("declines", f"{st.declines} in a row"),
        ("off", f"{st.off_reason} at {_when(st.off_ts)} UTC" if st.off_ts else "-"),
        ("changed", f"{_when(st.updated_ts)} UTC by {st.updated_by}")))
    return data, text


def _autoreload(settings: Settings) -> Iterator[Any]:
    from holders.autoreload import AutoReload, Limits
    from holders.sql import make_engine, migrate
    from payments.sql import migrate as payments_migrate
    migrate(settings.sqlalchemy_url)
    payments_migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        yield AutoReload(engine, Limits(max_cents=int(getattr(settings, "deposit_max_cents", 30_000))))
    finally:
        engine.dispose()


def cmd_autoreload(args: argparse.Namespace, settings: Settings) -> int:
    with contextmanager(_autoreload)(settings) as auto:
        actor = _actor(args)
        if args.autoreload_action == "show":
            st = auto.show(actor, args.holder, args.account)
        elif args.autoreload_action == "off":
            st = auto.off(actor, args.holder, args.account, args.reason)
        else:
            st = auto.set(actor, args.holder, args.account, threshold_cents=args.threshold,
                          amount_cents=args.amount, method_id=args.method)
    data, text = _autoreload_view(st)
    _emit(args, data, text)
    return 0


# --- alert preferences ------------------------------------------------------------------------------
def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _quiet(text: str) -> tuple[int, int]:
    """"22:00-07:00" -> minutes after midnight (start, end); start == end: no quiet hours."""
    def minute(part: str) -> int:
        hh, sep, mm = part.strip().partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2 and int(hh) < 24 and int(mm) < 60):
            raise BadInput(f"--quiet: HH:MM-HH:MM, e.g. 22:00-07:00 (got {text!r:.40})")
        return int(hh) * 60 + int(mm)
    start, sep, end = text.partition("-")
    if not sep:
        raise BadInput(f"--quiet: HH:MM-HH:MM, e.g. 22:00-07:00 (got {text!r:.40})")
    return minute(start), minute(end)


def _names_arg(text: str) -> list[str]:
    """"sms,email" -> ["sms", "email"]; "" or "none" -> [] (clears)."""
    return [] if text.strip().lower() == "none" else [v.strip() for v in text.split(",") if v.strip()]


def _dollars(text: str) -> int:
    from ledger.errors import BadAmount
    from ledger.money import parse_dollars
    if text.strip() in ("0", "0.00", "$0"):
        return 0
    try:
        return parse_dollars(text)
    except BadAmount as exc:
        raise BadInput(f"--threshold: {exc}") from None


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from holders.alerts import Alerts
    from holders.sql import make_engine, migrate
    if args.threshold is not None and args.account is None:
        raise BadInput("--threshold needs --account")
    if args.channels is not None and args.threshold is None:
        raise BadInput("--channels goes with --account and --threshold")
    if args.alerts_action == "set" and args.account is not None and args.threshold is None:
        raise BadInput("--account needs --threshold")
    actor = _actor(args)
    migrate(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        reg, alerts = Registry(engine, secret="", sender=None, ledger=None), Alerts(engine)
        h = reg.get(actor, args.holder)
        if args.alerts_action == "set":
            quiet = _quiet(args.quiet) if args.quiet is not None else None
            if quiet is None and args.off is None and args.mute is None and args.threshold is None:
                raise BadInput("nothing to set: --quiet, --off, --mute or --account with --threshold")
            cents = _dollars(args.threshold) if args.threshold is not None else None
            if quiet is not None or args.off is not None or args.mute is not None:
                alerts.set_prefs(actor, h.holder_id, quiet_start=quiet[0] if quiet else None,
                                 quiet_end=quiet[1] if quiet else None,
                                 off_channels=None if args.off is None else _names_arg(args.off),
                                 muted_kinds=None if args.mute is None else _names_arg(args.mute))
            if cents is not None:
                via = ["sms", "email"] if args.channels is None else _names_arg(args.channels)
                alerts.set_low_balance(actor, h.holder_id, args.account, cents, via)
        prefs = alerts.prefs(actor, h.holder_id)
        accounts = ([args.account] if args.account
                    else [link.account_id for link in reg.accounts(actor, h.holder_id)])
        low = [(a, alerts.low_balance(actor, h.holder_id, a)) for a in accounts]
    finally:
        engine.dispose()
    quiet_text = f"{_hhmm(prefs.quiet_start)}-{_hhmm(prefs.quiet_end)}"
    data = {"holder": h.holder_id, "quiet": quiet_text,
            "quiet_start": prefs.quiet_start, "quiet_end": prefs.quiet_end,
            "off_channels": sorted(prefs.off_channels), "muted_kinds": sorted(prefs.muted_kinds),
            "low_balance": [{"account": a, "threshold_cents": lb.threshold_cents if lb else None,
                             "channels": list(lb.channels) if lb else []} for a, lb in low]}
    text = "\n".join(f"{k:<12} {v}" for k, v in (
        ("holder", h.holder_id), ("quiet hours", f"{quiet_text} ({h.time_zone}; sms and calls)"),
        ("off", ", ".join(sorted(prefs.off_channels)) or "-"),
        ("muted", ", ".join(sorted(prefs.muted_kinds)) or "-")))
    if low:
        text += "\n\n" + table(["account", "low balance", "channels"], [
            [a, "-" if lb is None or not lb.threshold_cents else f"under {fmt_cents(lb.threshold_cents)}",
             ", ".join(lb.channels) if lb else "-"] for a, lb in low])
    _emit(args, data, text)
    return 0


Handler = Callable[[argparse.Namespace, Any], int]


def guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace, settings: Any) -> int:
        try:
            return handler(args, settings)
        except NotFound as exc:
            print(f"holders: not found: {exc}", file=sys.stderr)
            return 1
        except Unavailable as exc:
            print(f"holders: unavailable: {exc}", file=sys.stderr)
            return 3
        except HolderError as exc:
            print(f"holders: {exc.code}: {exc}", file=sys.stderr)
            return 2
        except LedgerError as exc:
            print(f"holders: ledger: {exc.code}: {exc}", file=sys.stderr)
            return 3 if exc.transient else 2
    return run


def register(subparsers: Any, open_redis: OpenRedis | None = None, gateway: Any = None,
             notices: Any = None) -> None:
    """Add `holders ...` to the host's parser; `open_redis` yields its Redis URL (the embedded one);
    `gateway(settings)` and `notices(engine)` serve refunds and the sweep (holders/refund_cli.py)."""
    global _open_redis
    _open_redis = open_redis or _configured_redis
    top = subparsers.add_parser("holders", help="account holders: find, show, history, claim, verify, alerts")
    sub = top.add_subparsers(dest="holders_command", metavar="ACTION", required=True)

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=guarded(handler))
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--staff", default="", help="who is acting (default cli:<login>)")
        return p

    p = add("create", cmd_create, "create a holder")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--mobile", required=True, help="E.164, e.g. +13125550100")
    p.add_argument("--language", default="en", choices=["en", "es"])
    p.add_argument("--time-zone", default="America/Chicago", help="IANA zone")
    p = add("find", cmd_find, "find holders by called/mobile number or email")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--number")
    which.add_argument("--email")
    p = add("show", cmd_show, "profile, accounts with balances, payment methods")
    p.add_argument("holder")
    p = add("history", cmd_history, "deposits and calls, newest first")
    p.add_argument("holder")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--no-sync", action="store_true", help="do not sync the ledger journal first")
    for name, handler, help_ in (("claim", cmd_claim, "send a code to the number to start a claim"),
                                 ("verify", cmd_verify, "check the code (read from stdin) and link")):
        p = add(name, handler, help_)
        p.add_argument("holder")
        p.add_argument("facility")
        p.add_argument("number", help="the account's called number, E.164")
        if name == "claim":
            p.add_argument("--channel", default="sms", choices=list(CHANNELS))
    p = add("autoreload", cmd_autoreload, "AutoReload of one account: show, set (switch on), off")
    p.add_argument("autoreload_action", choices=["show", "set", "off"])
    p.add_argument("holder")
    p.add_argument("account", help="the account id (ap_...)")
    p.add_argument("--threshold", type=int, help="reload when the balance falls below this, in cents")
    p.add_argument("--amount", type=int, help="cents charged to the card per reload")
    p.add_argument("--method", help="the holder's stored payment method id (pm_...)")
    p.add_argument("--reason", default="", help="why it is switched off (off)")
    p = add("alerts", cmd_alerts, "a holder's alert preferences and low-balance alerts: show, set")
    p.add_argument("alerts_action", choices=["show", "set"])
    p.add_argument("holder")
    p.add_argument("--quiet", help="quiet hours in the holder's zone, HH:MM-HH:MM (e.g. 22:00-07:00)")
    p.add_argument("--off", help="channels switched off, e.g. sms,email ('none' clears)")
    p.add_argument("--mute", help="kinds of notice not wanted, e.g. deposit_receipt ('none' clears)")
    p.add_argument("--account", help="the account id (ap_...) of a low-balance alert")
    p.add_argument("--threshold", help="alert when the balance drops under this many dollars (0: none)")
    p.add_argument("--channels", help="the low-balance alert's channels (default sms,email)")
    from holders import r2c_cli, refund_cli
    refund_cli.register(subparsers, add, gateway=gateway, notices=notices)
    r2c_cli.register(add)
