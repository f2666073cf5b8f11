"""`callcontrol serve` (the production controller), `callcontrol calls reconcile` (every ended call settled,
every charge explained by a call record) and `callcontrol demo` (scripted calls end to end)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from callcontrol.platform import runtime
from callcontrol.platform.config import Settings

log = structlog.get_logger("callcontrol.commands")


def register(subparsers: Any, *, web_app: Any = None) -> None:
    serve = subparsers.add_parser("serve", help="run the call controller (FastAGI + AMI watchdog + sync)")
    serve.add_argument("--bind", help="FastAGI host:port (default: settings agi_bind)")
    serve.add_argument("--no-sync", action="store_true",
                       help="do not run the SQL sync workers (ledger, payment trail) here")
    serve.add_argument("--instance", help="instance id (default: host-pid-random)")
    serve.set_defaults(func=serve_command)

    calls = subparsers.add_parser("calls", help="call settlement checks").add_subparsers(
        dest="calls_command", metavar="COMMAND", required=True)
    check = calls.add_parser("reconcile", help="exit 1 on an ended call left unsettled or a charge no "
                                                 "call record explains")
    check.add_argument("--no-sync", action="store_true", help="do not drain the journal into SQL first")
    check.set_defaults(func=calls_reconcile_command)

    demo = subparsers.add_parser("demo", help="drive scripted calls through the simulator end to end")
    demo.add_argument("--scale", type=float, default=0.01,
                      help="simulated seconds per real second divisor (0.01: 100x faster)")
    demo.add_argument("--no-wait", action="store_true",
                      help="end after the story even on a terminal (else the web app runs until Ctrl-C)")
    demo.set_defaults(func=lambda args, settings: demo_command(args, settings, web_app))


def _loop_policy() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    _loop_policy()
    with runtime.redis_url(settings) as url:
        return asyncio.run(_serve(args, settings, url))


async def _serve(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    from callcontrol.controller import Controller

    controller = Controller(settings, redis_url=redis_url, agi_bind=getattr(args, "bind", None),
                            run_sync=not getattr(args, "no_sync", False),
                            instance=getattr(args, "instance", None))
    fds = runtime.raise_fd_limit()
    await controller.start()
    runtime.tune_gc()
    log.info("controller_capacity", fd_limit=fds, hint="each call in progress holds one FastAGI socket")
    stop, force = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):     # first: drain; a second one: stop draining now
        loop.add_signal_handler(sig, lambda: force.set() if stop.is_set() else stop.set())
    print(f"callcontrol: serving FastAGI on port {controller.agi_port} (instance {controller.instance})",
          flush=True)
    await stop.wait()
    log.info("controller_stopping")
    left = await controller.drain(settings.drain_seconds, force)
    await controller.stop(grace=0.5 if left else 10.0)
    return 0


def calls_reconcile_command(args: argparse.Namespace, settings: Settings) -> int:
    import sys
    import time

    from callcontrol.call_state import unsettled_ended
    from ledger.reconcile import call_charges
    from ledger.redisclient import connect_sync
    from ledger.sql import make_engine, migrate
    from ledger.sync import SyncWorker

    with runtime.redis_url(settings) as url:
        migrate(settings.sqlalchemy_url)
        if not args.no_sync:
            worker = SyncWorker(url, settings.sqlalchemy_url, partitions=settings.ledger_partitions)
            try:
                worker.drain()
            finally:
                worker.close()
        r = connect_sync(url, cluster=False)
        engine = make_engine(settings.sqlalchemy_url)
        try:
            problems = unsettled_ended(r, settings.ledger_partitions, time.time())
            charges = call_charges(engine)
        finally:
            r.close()
            engine.dispose()
    for line in problems:
        print(f"UNSETTLED {line}")
    for line in charges.unexplained:
        print(f"UNEXPLAINED {line}")
    problems += charges.unexplained
    print(f"calls: {charges.captured} c posted by resolved call holds, {charges.recorded} c on call records")
    if problems:
        print(f"{len(problems)} call(s) not settled or not explained by their record", file=sys.stderr)
        return 1
    print("every ended call is settled and every charge has its call record")
    return 0


def demo_command(args: argparse.Namespace, settings: Settings, web_app: Any = None) -> int:
    import sys

    from callcontrol.platform.logs import configure_logging

    # The story goes to stdout; only warnings and errors go to the log (stderr).
    if settings.log_level.lower() in ("info", ""):
        configure_logging(settings.log_format, "warning")
    _loop_policy()
    with runtime.redis_url(settings) as url:
        return asyncio.run(run_demo(settings, url, scale=args.scale, web_app=web_app,
                                    wait=sys.stdout.isatty() and not args.no_wait))


# ---------------------------------------------------------------------------------------------------
# In-process stack: controller + simulated Asterisk on one shared clock (demo, end-to-end tests, bench)
# ---------------------------------------------------------------------------------------------------

# 10:00 on a Tuesday in Chicago: FAC-07's calling hours (07:00-23:00) are open for hours.
DEMO_START = 1795536000.0   # 2026-11-24T16:00:00Z


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """A controller and a simulated Asterisk (with its AMI server) wired together over real TCP."""

    def __init__(self, settings: Settings, redis_url: str, *, scale: float = 0.01,
                 start_at: float | None = DEMO_START, sql_url: str | None = None, run_sync: bool = True,
                 ami: bool = True, instance: str | None = None, names_dir: str | None = None,
                 sim_config: Any = None, clock: Any = None, agi_port: int | None = None,
                 gateway: Any = None, card_jobs_interval: float | None = None) -> None:
        from callcontrol.platform.clock import Clock

        self.settings = settings
        self.redis_url = redis_url
        self.clock = clock or Clock(scale, start=start_at)
        self.sql_url = sql_url
        self.run_sync = run_sync
        self.use_ami = ami
        self.instance = instance
        self.names_dir = names_dir
        self.sim_config = sim_config
        self.agi_port = agi_port or _free_port()
        self.gateway = gateway
        self.card_jobs_interval = card_jobs_interval
        self.sim: Any = None
        self.controller: Any = None

    async def start(self) -> Stack:
        from dataclasses import replace

        from callcontrol.controller import Controller
        from callcontrol.sim import SimConfig, Simulator

        config = self.sim_config or SimConfig(hangup_agi="hangup")
        self.sim = Simulator(("127.0.0.1", self.agi_port), clock=self.clock, config=config,
                             ami_port=0 if self.use_ami else None)
        await self.sim.start()
        settings = replace(self.settings, agi_bind=f"127.0.0.1:{self.agi_port}",
                           agi_allow=("127.0.0.1",))
        if self.use_ami:
            settings = replace(settings, ami_host="127.0.0.1", ami_port=self.sim.ami.port,
                               ami_user=config.ami_user, ami_secret=config.ami_secret)
        else:
            settings = replace(settings, ami_user="")
        self.controller = Controller(settings, redis_url=self.redis_url, clock=self.clock,
                                     sql_url=self.sql_url, run_sync=self.run_sync, instance=self.instance,
                                     names_dir=self.names_dir, gateway=self.gateway,
                                     card_jobs_interval=self.card_jobs_interval)
        await self.controller.start()
        return self

    async def stop(self) -> None:
        if self.controller is not None:
            await self.controller.stop()
        if self.sim is not None:
            await self.sim.stop()

    async def __aenter__(self) -> Stack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ---------------------------------------------------------------------------------------------------
# The demo: scripted calls from FAC-07 through the whole stack, then the statements from SQL
# ---------------------------------------------------------------------------------------------------

DEMO_FACILITY = "FAC-07"
DEMO_PIN = "10422468"          # inmate 1042 + passcode 2468 (facility_data/policy/FAC-07.toml)
DEMO_INMATE = "1042"
# number -> (owner, balance the demo resets it to, in cents); None: no AdvancePay account
DEMO_ACCOUNTS: dict[str, tuple[str, int | None]] = {
    "+13125551234": ("Maria (mother)", 510),
    "+13125552000": ("Dave (brother)", 500),
    "+13125553000": ("Former partner", 500),
    "+13125554000": ("Aunt Rosa", 500),
    "+13125555000": ("Unknown number", None),
    "+13125556000": ("Grandma Lee", 30),
    "+13125550100": ("Public defender", 1000),
}


@dataclass
class DemoCall:
    title: str
    number: str          # E.164 of the recipient
    keys: str = ""       # what the recipient presses
    talk: float | None = 30.0
    answer: bool = True
    outcome: str = ""
    reason: str = ""
    billed: int = 0
    amount: int = 0
    recorded: bool = False
    heard: str = ""
    actions: list[object] | None = None  # what the recipient does instead of `keys` (paying by card)
    request: bool = False  # the demo holder asked the inmate to call: 1 at "you have 1 call request"


def demo_calls() -> list[DemoCall]:
    return [
        DemoCall("Accepted, talks 2.5 min", "+13125551234", "1", 150),
        DemoCall("Refused by recipient (2)", "+13125552000", "2"),
        DemoCall("Blocked by recipient (9)", "+13125553000", "9"),
        DemoCall("Same number again", "+13125553000", "1"),
        DemoCall("Not answered", "+13125554000", answer=False),
        DemoCall("No account: recipient pays", "+13125555000", "", 60,
                 actions=["1", "4111111111111111", "1230", "123", "60601"]),
        DemoCall("Funds run out mid-call (L())", "+13125556000", "1", None),
        DemoCall("Attorney (privileged)", "+13125550100", "1", 60),
        DemoCall("Request2Call: inmate presses 1", "+13125551234", "1", 30, request=True),
    ]


async def _reset_demo_accounts(ledger: Any, run: str) -> dict[str, str]:
    """Open the demo accounts (idempotent op ids) and bring each to its demo balance, so a re-run
    shows the same story; recipient blocks from an earlier run are lifted."""
    ids: dict[str, str] = {}
    for number, (owner, cents) in DEMO_ACCOUNTS.items():
        tag = number[1:]
        await ledger.set_block(f"demo-unblock-{run}-{tag}", DEMO_FACILITY, number, False, source="demo reset")
        if cents is None:
            continue
        account = await ledger.open_account(f"demo-open-{tag}", DEMO_FACILITY, number, owner=owner)
        ids[number] = account
        balance = await ledger.balance(account)
        if balance.state == "frozen":
            await ledger.unfreeze(f"demo-unfreeze-{run}-{tag}", account)
        delta = cents - balance.posted
        if delta > 0:
            await ledger.deposit(f"demo-dep-{run}-{tag}", account, delta, source="demo deposit")
        elif delta < 0:
            await ledger.adjust(f"demo-adj-{run}-{tag}", account, delta, reason="demo reset")
    return ids


def _money(cents: int) -> str:
    return f"{'-' if cents < 0 else ''}${abs(cents) // 100}.{abs(cents) % 100:02d}"


def _statement(sql_url: str, accounts_by_number: dict[str, str], since_ms: int) -> list[str]:
    from sqlalchemy import select

    from ledger.sql import accounts, make_engine, transfers

    lines: list[str] = []
    engine = make_engine(sql_url)
    try:
        with engine.connect() as conn:
            for number, account in accounts_by_number.items():
                row = conn.execute(select(accounts).where(accounts.c.account_id == account)).first()
                if row is None:
                    continue
                owner = DEMO_ACCOUNTS[number][0]
                lines.append(f"  {number}  {owner:<18} posted {_money(row.posted):>8}  "
                             f"held {_money(row.held)}  state {row.state}")
                moves = conn.execute(select(transfers).where(transfers.c.account_id == account)
                                     .where(transfers.c.ts >= since_ms).order_by(transfers.c.ver)).all()
                for m in moves:
                    what = m.kind + (f" {m.hold_id}" if m.hold_id else f" {m.note}" if m.note else "")
                    lines.append(f"      {what:<36} {_money(m.amount):>8}  "
                                 f"balance {_money(m.posted_after):>8}")
    finally:
        engine.dispose()
    return lines


async def run_demo(settings: Settings, redis_url: str, *, scale: float = 0.01, out: Any = None,
                   web_app: Any = None, wait: bool = False) -> int:
    """Seed FAC-07, run the scripted calls over real TCP, sync to SQL and print the story. With `web_app`
    (callcontrol/cli.py hands in the family's web app) a demo holder with a stored sandbox card and
    AutoReload is set up through the web API first, and the web app runs on until Ctrl-C when `wait`."""
    import sys
    import time
    from dataclasses import replace

    from callcontrol.demo_family import LOW_ALERT, DemoFamily, sign_in
    from callcontrol.demo_inbox import Inbox
    from callcontrol.sim import Handset, Recipient, Record
    from ledger import Ledger
    from ledger.sql import migrate
    from ledger.sync import SyncWorker
    from payments.sandbox import SandboxGateway

    out = out or sys.stdout
    settings = replace(settings, payment_gateway="sandbox")
    gateway = SandboxGateway()
    family: DemoFamily | None = None
    inbox: Inbox | None = None
    asked = ""
    sql_url = settings.sqlalchemy_url
    names_dir = Path(settings.data_dir) / "names"
    await asyncio.to_thread(migrate, sql_url)
    since_ms = int(time.time() * 1000) - 1000
    run = f"{int(time.time() * 1000):x}"
    ledger = await Ledger.connect(redis_url, partitions=settings.ledger_partitions,
                                  max_amount=settings.max_amount)
    records: list[dict[str, Any]] = []
    try:
        accounts_by_number = await _reset_demo_accounts(ledger, run)
        reloaded = ""
        if web_app is not None:
            family = await DemoFamily(web_app, settings, redis_url, gateway).start()
            reloaded = await family.set_up(DEMO_FACILITY, DEMO_MARIA)
            inbox = await Inbox().start()
            print(f"Demo holder {sign_in()}: Visa ...1111 stored (sandbox), AutoReload on for "
                  f"{DEMO_MARIA}: under $5.00 add $25.00; low-balance alert under {_money(LOW_ALERT)} by "
                  f"SMS and email", file=out)
        stack = Stack(settings, redis_url, scale=scale, sql_url=sql_url, run_sync=True,
                      names_dir=str(names_dir), gateway=gateway, card_jobs_interval=0.1)
        await stack.start()
        try:
            assert stack.controller.ctx is not None
            stack.controller.ctx.on_record = records.append
            print(f"AdvancePay demo: {DEMO_FACILITY}, controller on 127.0.0.1:{stack.agi_port}, simulated "
                  f"Asterisk at {round(1 / scale)}x speed\n", file=out)
            calls = demo_calls()
            for i, call in enumerate(calls, 1):
                before = len(records)
                digits = call.number[2:] if call.number.startswith("+1") else "011" + call.number[1:]
                if call.request and family is not None:   # the controller sees requests 5 simulated s late
                    await family.ask_to_call(DEMO_FACILITY, DEMO_INMATE, call.number, stack.clock.now)
                    await asyncio.sleep(6 * scale)
                    digits = "1"
                handset = Handset(actions=["1", DEMO_PIN, digits, Record("#")])
                recipient = (Recipient(call.number, actions=call.actions, talk=call.talk) if call.actions else
                             Recipient(call.number, keys=call.keys, talk=call.talk, answer=call.answer))
                result = await stack.sim.place_call(DEMO_FACILITY, f"07{i:02d}", extension=f"07{i:02d}",
                                                    handset=handset, recipient=recipient)
                await asyncio.sleep(0.02)
                rec = records[-1] if len(records) > before else {}
                call.outcome, call.reason = rec.get("outcome", "?"), rec.get("reason", "")
                call.billed, call.amount = rec.get("billed_seconds", 0), rec.get("amount", 0)
                call.recorded = bool(result.recorded)
                spoken = [p.rsplit("/", 1)[-1] for p in result.prompts if p.startswith("advancepay/")]
                tail = [p for p in spoken if p not in ("goodbye", "please_hold")]
                call.heard = tail[-1] if tail and tail[-1] != "monitoring_notice" else (spoken or [""])[-1]
                if call.request and "r2c_you_have" in spoken:
                    asked = f"call {i} heard \"you have 1 call request\", pressed 1: {call.outcome}"
            if reloaded:                 # the first call crossed $5.00: the controller's AutoReload runs
                await _wait_for_reload(ledger, reloaded)
        finally:
            await stack.stop()
        worker = SyncWorker(redis_url, sql_url, partitions=settings.ledger_partitions)
        try:
            synced = await asyncio.to_thread(worker.drain)
        finally:
            worker.close()
        head = f"{'#':>2}  {'call':<30} {'number':<13} {'outcome':<10} {'reason':<18} {'billed':>6} " \
               f"{'charged':>8}  {'rec':<3}  inmate heard"
        print(head, file=out)
        print("-" * len(head), file=out)
        for i, c in enumerate(calls, 1):
            print(f"{i:>2}  {c.title:<30} {c.number:<13} {c.outcome:<10} {c.reason[:18]:<18} {c.billed:>5}s "
                  f"{_money(c.amount):>8}  {'yes' if c.recorded else 'no':<3}  {c.heard}", file=out)
        print(f"\nJournal synced to {sql_url.split('://', 1)[0]} ({synced} left for the last drain). Account "
              f"statements (this run, from SQL):", file=out)
        for line in await asyncio.to_thread(_statement, sql_url, accounts_by_number, since_ms):
            print(line, file=out)
        bad = [c for c in calls if c.outcome in ("", "?", "failed")]
        if family is not None and inbox is not None:
            print(f"\nRequest2Call: the holder asked inmate {DEMO_INMATE} to call {DEMO_MARIA}; "
                  f"{asked or 'not heard'}", file=out)
            print("Family notices (notify worker -> the demo's SMS webhook and SMTP server on loopback):",
                  file=out)
            labels = {"low_balance": "low balance", "r2c_answered": "Request2Call answered"}
            got = sorted(((list(labels).index(k), r.channel != "sms", r.text, r) for k, r in
                          await family.deliver(inbox, since_ms) if k in labels), key=lambda t: t[:3])
            for n, _, text, r in got:
                what = text if r.channel == "sms" else f'subject "{r.subject}", the same text'
                print(f"  {list(labels.values())[n]:<21} {r.channel:<5} {r.address:<17}  {what}", file=out)
            receipt = await family.deposit(reloaded, 2000)
            after = await ledger.balance(reloaded)
            print(f"\nWeb app (the family's API, docs/web.md): {family.url}/docs\n  sign in: {sign_in()}\n"
                  f"  checked: that holder deposited {receipt['amount']['formatted']} by the stored card "
                  f"into {DEMO_MARIA} over the API; available now {_money(after.available)}", file=out)
            if wait:
                from callcontrol.demo_family import until_interrupted
                print("  running until Ctrl-C", file=out, flush=True)
                await until_interrupted()
        return 1 if bad else 0
    finally:
        if family is not None:
            await family.stop()
        if inbox is not None:
            await inbox.stop()
        await ledger.close()


DEMO_MARIA = "+13125551234"


async def _wait_for_reload(ledger: Any, account: str, seconds: float = 10.0) -> None:
    """Until the AutoReload deposit has landed (the controller's card jobs: sync, detect, charge)."""
    import time

    from callcontrol.demo_family import THRESHOLD

    end = time.monotonic() + seconds
    while time.monotonic() < end and (await ledger.balance(account)).posted < THRESHOLD:
        await asyncio.sleep(0.05)
