"""One controller process: FastAGI routes, the AMI watchdog, the shared ledger, rating catalog and policy,
the meter loop, the reaper, the SQL sync worker (a thread) and start-up recovery of orphaned calls.

Every instance is interchangeable: a call's state lives in Redis, so the screen AGI, the hangup handler
or a restarted controller may finish a call that another instance started. Each instance keeps a
heartbeat key; recovery leaves alone the calls of instances that are still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from callcontrol import speech
from callcontrol.asterisk.agi import AGIServer
from callcontrol.asterisk.agi_deadlines import Deadlines, prompt_lengths
from callcontrol.call_state import CallState, CallStore
from callcontrol.deposit import deposit_route
from callcontrol.flows.context import FlowContext
from callcontrol.flows.hangup import hangup_route, settle_call
from callcontrol.flows.inmate_call import inmate_call
from callcontrol.flows.screen import screen
from callcontrol.metering import Meter, MeteredCall
from callcontrol.platform.config import Settings
from callcontrol.policy import Policy
from ivr_prompts.catalog import PACKAGE_DIR as PROMPTS_DIR

log = structlog.get_logger("callcontrol.controller")

HEARTBEAT_KEY = "apc:instance:{}"
HEARTBEAT_TTL = 15


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class Controller:
    """Start with `await start()`, stop with `await stop()`; `agi_port` is the bound FastAGI port."""

    def __init__(self, settings: Settings, *, redis_url: str, clock: Any = None, catalog: Any = None,
                 policy: Policy | None = None, instance: str | None = None, names_dir: str | None = None,
                 sql_url: str | None = None, run_sync: bool = True, agi_bind: str | None = None,
                 reap_interval: float = 30.0, sync_interval: float = 0.5,
                 screening_margin: int = 120) -> None:
        from callcontrol.platform.clock import Clock

        self.settings = settings
        self.redis_url = redis_url
        self.clock = clock or Clock()
        self._catalog = catalog
        self._policy = policy
        self.instance = instance or default_instance_id()
        self.names_dir = names_dir
        self.sql_url = sql_url if sql_url is not None else settings.sqlalchemy_url
        self.run_sync = run_sync
        self.agi_bind = agi_bind or settings.agi_bind
        self.reap_interval = reap_interval
        self.sync_interval = sync_interval
        self.screening_margin = screening_margin
        self.ledger: Any = None
        self.store: CallStore | None = None
        self.meter: Meter | None = None
        self.ctx: FlowContext | None = None
        self.agi: AGIServer | None = None
        self.ami: Any = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._sync_worker: Any = None

    @property
    def agi_port(self) -> int:
        assert self.agi is not None
        return self.agi.port

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Controller:
        from ledger import Ledger
        from rating import load_catalog

        s = self.settings
        catalog = self._catalog or load_catalog(Path(s.facility_dir))
        policy = self._policy or Policy.load(Path(s.facility_dir) / "policy")
        self.ledger = await Ledger.connect(self.redis_url, partitions=s.ledger_partitions,
                                          max_amount=s.max_amount)
        self.store = CallStore.from_url(self.redis_url)
        self.meter = Meter(self.ledger, self.store, self.clock, on_refused=self._funds_gone)
        self.ctx = FlowContext(
            settings=s, clock=self.clock, ledger=self.ledger, catalog=catalog, policy=policy,
            store=self.store, meter=self.meter, speech=speech, instance=self.instance,
            names_dir=self.names_dir or "", screening_margin=self.screening_margin,
        )
        routes = {
            "inmate-call": partial(inmate_call, self.ctx),
            "screen": partial(screen, self.ctx),
            "hangup": partial(hangup_route, self.ctx),
            "deposit": deposit_route(self.ctx),
        }
        deadlines = Deadlines(reply=s.agi_reply_timeout, dial_grace=s.agi_dial_grace,
                              lengths=prompt_lengths(PROMPTS_DIR))
        self.agi = AGIServer(routes, allow=s.agi_allow, deadlines=deadlines)
        host, _, port = self.agi_bind.rpartition(":")
        await self.agi.start(host or "127.0.0.1", int(port))
        await self._heartbeat_once()
        if s.ami_user:
            await self._start_ami()
        self._tasks = [
            asyncio.create_task(self.meter.run(self._stop), name="meter"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._reaper(), name="reaper"),
        ]
        if self.run_sync:
            self._start_sync()
        await self.recover()
        log.info("controller_started", instance=self.instance, agi_port=self.agi.port,
                 ami=bool(self.ami), sync=self.run_sync)
        return self

    async def stop(self, grace: float = 2.0) -> None:
        self._stop.set()
        if self.agi is not None:
            await self.agi.stop(grace)
            drain = getattr(self.agi.routes.get("deposit"), "drain", None)
            if drain is not None:           # card charges run on after their call: let them finish
                await drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ami is not None:
            with contextlib.suppress(Exception):
                await self.ami.close()
        if self._sync_thread is not None:
            self._sync_stop.set()
            await asyncio.to_thread(self._sync_thread.join, 10)
            with contextlib.suppress(Exception):
                self._sync_worker.close()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.r.delete(HEARTBEAT_KEY.format(self.instance))
            await self.store.close()
        if self.ledger is not None:
            close = getattr(self.ledger, "close", None) or getattr(self.ledger, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    # ------------------------------------------------------------------ AMI watchdog
    async def _start_ami(self) -> None:
        from callcontrol.asterisk.ami import AMIClient

        s = self.settings
        self.ami = AMIClient(s.ami_host, s.ami_port, s.ami_user, s.ami_secret, events="call")
        self.ami.on_event("Hangup", self._on_ami_hangup)
        self.ami.on_event("HangupRequest", self._on_caller_hangup_request)
        self.ami.on_event("SoftHangupRequest", self._on_caller_hangup_request)
        try:
            await self.ami.connect()
        except Exception as exc:
            # The watchdog is a safety net, not a dependency: calls still connect (Dial's L() is the hard
            # stop); the client keeps retrying only after a first success, so retry here in the background.
            log.warning("ami_unavailable", error=type(exc).__name__)
            self._tasks.append(asyncio.create_task(self._ami_retry(), name="ami-retry"))
        if self.ctx is not None:
            self.ctx.ami = self.ami

    async def _ami_retry(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            await asyncio.sleep(delay)
            try:
                await self.ami.connect()
                return
            except RuntimeError:
                return
            except Exception:
                delay = min(delay * 2, 30.0)

    async def _on_ami_hangup(self, msg: Any) -> None:
        """A call we meter without its inmate session (recovered) ended: settle it now."""
        assert self.ctx is not None
        call_id = self.ctx.orphans.pop(msg.get("Channel", ""), None)
        if call_id:
            with contextlib.suppress(Exception):
                await settle_call(self.ctx, call_id, self.clock.now(), "ami_hangup")

    async def _on_caller_hangup_request(self, msg: Any) -> None:
        """The caller's channel is going down while its inmate session waits in EXEC Dial.

        Asterisk tells that AGI only when Dial returns, and Dial first runs the recipient's screening
        to its end: fix the call's end now (first writer wins), so that a recipient who presses 1
        afterwards is neither connected nor billed (acceptance of an ended call is refused), and stop
        metering a call that is over."""
        assert self.ctx is not None and self.store is not None and self.meter is not None
        call_id = self.ctx.dialling.get(msg.get("Channel", ""))
        if call_id:
            self.meter.stop(call_id)
            with contextlib.suppress(Exception):
                await self.store.finish(call_id, self.clock.now(), "caller_hangup")

    async def _funds_gone(self, call: MeteredCall, exc: BaseException) -> None:
        """A capture was refused (account frozen, funds withdrawn): end the call, settle what was used."""
        assert self.store is not None
        state = await self.store.get(call.call_id)
        if state is None:
            return
        await self.store.update(call.call_id, funds_cut=True)
        log.warning("call_cut_funds", call_id=call.call_id, error=type(exc).__name__)
        if self.ami is not None and self.ami.connected and state.caller_channel:
            try:
                await self.ami.hangup(state.caller_channel)
                return
            except Exception as err:
                log.error("ami_hangup_failed", call_id=call.call_id, error=type(err).__name__)
        # No AMI: the L() limit still ends the call; settle now so no more than captured is charged.
        assert self.ctx is not None
        with contextlib.suppress(Exception):
            await settle_call(self.ctx, call.call_id, self.clock.now(), "funds_gone")

    # ------------------------------------------------------------------ background
    async def _heartbeat_once(self) -> None:
        assert self.store is not None
        await self.store.r.set(HEARTBEAT_KEY.format(self.instance), "1", ex=HEARTBEAT_TTL)

    async def _heartbeat(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(HEARTBEAT_TTL / 3)
            with contextlib.suppress(Exception):
                await self._heartbeat_once()

    async def _reaper(self) -> None:
        """Last resort: void holds whose lease ran out, and settle calls nobody is left to settle."""
        while not self._stop.is_set():
            await self.clock.sleep(self.reap_interval)
            try:
                await self.ledger.reap_expired()
                await self.recover(stale_only=True)
            except Exception as exc:
                log.warning("reaper_failed", error=type(exc).__name__)

    def _start_sync(self) -> None:
        from ledger.sql import migrate
        from ledger.sync import SyncWorker

        migrate(self.sql_url)
        worker = SyncWorker(self.redis_url, self.sql_url, partitions=self.settings.ledger_partitions)
        self._sync_worker = worker

        def run() -> None:
            try:
                worker.run_forever(self._sync_stop)
            except Exception:
                log.exception("sync_worker_failed")

        self._sync_thread = threading.Thread(target=run, name="ledger-sync", daemon=True)
        self._sync_thread.start()

    # ------------------------------------------------------------------ recovery
    async def _alive(self, instance: str) -> bool:
        assert self.store is not None
        if not instance or instance == self.instance:
            return False
        return bool(await self.store.r.exists(HEARTBEAT_KEY.format(instance)))

    async def recover(self, *, stale_only: bool = False) -> dict[str, int]:
        """Find unsettled calls whose controller is gone: meter those still up, settle the others.

        With AMI, CoreShowChannels says which caller channels are still up. Without it, only calls
        whose lease has run out are settled (they cannot still be running: the lease exceeds the
        L() limit plus ringing and screening).
        """
        assert self.store is not None and self.ctx is not None and self.meter is not None
        counts = {"resumed": 0, "settled": 0, "skipped": 0}
        live = await self.store.live_calls()
        if not live:
            return counts
        channels: set[str] | None = None
        if self.ami is not None and self.ami.connected and not stale_only:
            try:
                channels = {ev.get("Channel", "") for ev in await self.ami.core_show_channels()}
            except Exception as exc:
                log.warning("recovery_no_channel_list", error=type(exc).__name__)
        now = self.clock.now()
        for call_id, lease_expires in live:
            if call_id in self.ctx.sessions or call_id in self.meter.calls:
                continue
            state = await self.store.get(call_id)
            if state is None:
                await self.store.r.zrem("apc:calls:live", call_id)
                continue
            if state.settled or await self._alive(state.instance):
                counts["skipped"] += 1
                continue
            if stale_only or channels is None:
                if lease_expires < now:
                    await self._settle_lost(state)
                    counts["settled"] += 1
                continue
            if state.caller_channel in channels:
                self.ctx.orphans[state.caller_channel] = call_id
                if state.accepted_at and not state.ended_at:
                    quote = self.ctx.quote_for(state)
                    self.meter.start(MeteredCall(call_id, state.account, state.accepted_at, state.increment,
                                                 quote.increment_charge, state.hold_amount,
                                                 state.captured_k, state.captured))
                counts["resumed"] += 1
            else:
                await self._settle_lost(state)
                counts["settled"] += 1
        if any(counts.values()):
            log.info("recovery", **counts)
        return counts

    async def _settle_lost(self, state: CallState) -> None:
        """The call ended while no controller watched it: its end is unknown, so charge no more than
        the increments already captured (the family is never billed for time nobody measured)."""
        assert self.ctx is not None
        # One second past acceptance: final_total() then charges max(captured, first increment).
        ended = state.accepted_at + 1 if state.accepted_at else self.clock.now()
        with contextlib.suppress(Exception):
            await settle_call(self.ctx, state.call_id, ended, "recovered")
