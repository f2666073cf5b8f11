"""The families' side of `callcontrol demo`: the web app (handed in by callcontrol/cli.py: callcontrol never
imports web) served by uvicorn on a loopback port, and a demo holder set up through its API as a family
would: sign up (or in), verify the number by a code, store a sandbox card, switch AutoReload on; then
a low-balance alert by SMS and email, a Request2Call, and the notify worker delivering both notices into
the demo's own inbox (callcontrol/demo_inbox.py)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx

EMAIL = "maria@example.com"
PASSWORD = "demo-password-2468"          # the demo's own throwaway sign-in, printed for a person to use
CARD = {"number": "4111111111111111", "expiry": "12/30", "cvv": "123"}
THRESHOLD, RELOAD = 500, 2500            # AutoReload: under $5.00, add $25.00
LOW_ALERT = 500                          # the low-balance alert: under $5.00, by SMS and email


def sign_in() -> str:
    return f"{EMAIL} / password {PASSWORD}"


class Codes:
    """The code sender of the demo: keeps the last code in memory for the scripted sign-up."""

    def __init__(self) -> None:
        self.last = ""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        self.last = code


class _Server:
    """uvicorn without its own signal capture: the demo decides what Ctrl-C does."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = Quiet(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                await self.task
                raise RuntimeError("the demo web app did not start")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


class DemoFamily:
    def __init__(self, web_app: Callable[..., Any], settings: Any, redis_url: str, gateway: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.codes = Codes()
        app = web_app(redis_url=redis_url, sql_url=settings.sqlalchemy_url,
                      facility_dir=settings.facility_dir,
                      web_secret=secrets.token_hex(24), code_secret=secrets.token_hex(24),
                      code_sender=self.codes, gateway=gateway, gateway_name="sandbox",
                      partitions=settings.ledger_partitions, max_amount=settings.max_amount,
                      deposit_max_cents=settings.deposit_max_cents, cookie_secure=False)
        self._server = _Server(app, self.port)
        self.http = httpx.AsyncClient(base_url=f"{self.url}/api/v1", timeout=30)
        self.method_id = ""
        self.holder_id = ""
        self.sql_url = settings.sqlalchemy_url
        self.help_number = settings.notify_help_number

    async def start(self) -> DemoFamily:
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self.http.aclose()
        await self._server.stop()

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        reply = await self.http.request(method, path, **kw)
        if reply.status_code >= 400:
            raise RuntimeError(f"demo web {method} {path}: {reply.status_code} {reply.text[:200]}")
        return reply.json() if reply.content else None

    async def set_up(self, facility: str, number: str) -> str:
        """The demo holder of `number`: verified, a stored card, AutoReload on; returns the account."""
        signup = {"name": "Maria Lopez", "email": EMAIL, "mobile": "+13125550199", "password": PASSWORD}
        await self.http.post("/signup", json=signup)         # a re-run: already signed up, sign in below
        token = (await self._call("POST", "/tokens", json={"email": EMAIL, "password": PASSWORD}))["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.holder_id = str((await self._call("GET", "/me"))["holder_id"])
        mine = [a for a in await self._call("GET", "/accounts") if a["number"] == number]
        if not mine:
            await self._call("POST", "/accounts", json={"facility_id": facility, "number": number})
            mine = [await self._call("POST", "/accounts/verify", json={
                "facility_id": facility, "number": number, "code": self.codes.last})]
        for old in await self._call("GET", "/payment-methods"):   # a sandbox forgets its tokens on exit
            await self._call("DELETE", f"/payment-methods/{old['method_id']}")
        card = await self._call("POST", "/payment-methods", json=CARD,
                                headers={"Idempotency-Key": secrets.token_hex(8)})
        self.method_id = card["method_id"]
        account = str(mine[0]["account_id"])
        await self._call("PUT", f"/accounts/{account}/autoreload", json={
            "threshold_cents": THRESHOLD, "amount_cents": RELOAD, "method_id": self.method_id})
        await asyncio.to_thread(self._alerts, account)
        return account

    def _alerts(self, account: str) -> None:
        """The holder's low-balance alert by SMS and email, with no quiet hours (the demo's texts go at any
        hour), and no call request left pending by an interrupted run (holders' API as the holder: the web
        API has no route for these yet)."""
        from holders import Actor
        from holders.alerts import Alerts
        from holders.request2call import CallRequests
        from holders.sql import make_engine

        me = Actor.holder(self.holder_id)
        engine = make_engine(self.sql_url)
        try:
            alerts = Alerts(engine)
            alerts.set_prefs(me, self.holder_id, quiet_start=0, quiet_end=0)
            alerts.set_low_balance(me, self.holder_id, account, LOW_ALERT, ["sms", "email"])
            any_time = CallRequests(engine, clock=lambda: 0.0)     # every pending one, expired or not
            for old in any_time.of_holder(me, self.holder_id, pending_only=True):
                any_time.cancel(me, old.request_id)
        finally:
            engine.dispose()

    async def ask_to_call(self, facility: str, inmate: str, number: str, clock: Callable[[], float]) -> None:
        """Request2Call: the holder asks `inmate` to call `number` (`clock`: the demo's simulated time)."""
        from holders import Actor
        from holders.request2call import CallRequests
        from holders.sql import make_engine

        def ask() -> None:
            engine = make_engine(self.sql_url)
            try:
                CallRequests(engine, clock=clock).create(Actor.holder(self.holder_id), self.holder_id,
                                                         facility, inmate, number)
            finally:
                engine.dispose()
        await asyncio.to_thread(ask)

    async def deliver(self, inbox: Any, since_ms: int) -> list[tuple[str, Any]]:
        """Run the notify worker (low-balance crossings from the ledger's SQL mirror, then every due
        message) into the demo's inbox; returns (event kind, what arrived) of messages made since
        `since_ms` (not those an earlier, interrupted run left)."""
        from sqlalchemy import select

        from holders.alerts import derive_low_balance
        from holders.directory import HolderDirectory
        from notify import Worker
        from notify.mail import SMTPEmail
        from notify.sms import WebhookSMS
        from notify.sql import make_engine
        from notify.sql.schema import events, messages
        from notify.worker import NotifyConfig

        engine = make_engine(self.sql_url)
        sms = WebhookSMS(inbox.sms_url, timeout=5)
        mail = SMTPEmail("127.0.0.1", inbox.smtp_port, starttls=False, timeout=5)
        config = NotifyConfig(rate_per_hour=100, help_number=self.help_number)
        worker = Worker(engine, HolderDirectory(), {"sms": sms, "email": mail}, config,
                        derivers=[derive_low_balance])
        try:
            for _ in range(5):
                if not await worker.run_once():
                    break
            ids = [r.message_id for r in inbox.received]

            def kinds() -> dict[str, str]:
                with engine.connect() as conn:
                    return {str(m): str(k) for m, k in conn.execute(
                        select(messages.c.message_id, events.c.kind)
                        .join(events, events.c.event_id == messages.c.event_id)
                        .where(messages.c.message_id.in_(ids), messages.c.created_ts >= since_ms))}
            kind = await asyncio.to_thread(kinds)
        finally:
            await sms.close()
            engine.dispose()
        return [(kind[r.message_id], r) for r in inbox.received if r.message_id in kind]

    async def deposit(self, account: str, cents: int) -> Any:
        """What a person signed in does: fund the account with the stored card."""
        return await self._call("POST", f"/accounts/{account}/deposits",
                                json={"amount_cents": cents, "method_id": self.method_id},
                                headers={"Idempotency-Key": secrets.token_hex(8)})


async def until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
