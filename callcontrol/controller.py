"""One controller process: FastAGI routes, the AMI watchdog, the shared ledger, rating catalog and policy,
the meter loop, the reaper, the SQL sync worker (a thread; another copies the payment trail), start-up
recovery of orphaned calls and, with a
payment gateway, the stored-card jobs (AutoReload, stuck-charge sweep: callcontrol/card_jobs.py).

Every instance is interchangeable: a call's state lives in Redis, so the screen AGI, the hangup handler
or another instance may finish a call that one instance started. Each instance keeps a heartbeat key;
once an owner's heartbeat is gone, one other instance adopts each of its unsettled calls (an atomic claim
in the call's state), meters it on and settles it. Settlements that failed while Redis was down are
retried, with the end learnt then, as soon as Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from callcontrol import speech
from callcontrol.alert_calls import alert_route
from callcontrol.asterisk.agi import AGIServer, Handler
from callcontrol.asterisk.agi_deadlines import Deadlines, prompt_lengths
from callcontrol.call_state import CallState, CallStore
from callcontrol.deposit import deposit_route
from callcontrol.flows.context import FlowContext
from callcontrol.flows.hangup import Ended, hangup_route, retry_unsettled, settle_call
from callcontrol.flows.inmate_call import inmate_call
from callcontrol.flows.one_call_money import finish_open
from callcontrol.flows.screen import screen
from callcontrol.metering import Meter, MeteredCall
from callcontrol.platform.config import Settings
from callcontrol.platform.metrics import HealthServer, Metrics, TimedLedger
from callcontrol.policy import Policy
from ivr_prompts.catalog import PACKAGE_DIR as PROMPTS_DIR

log = structlog.get_logger("callcontrol.controller")

HEARTBEAT_TTL = 15
HEARTBEAT_RETRY = 1.0      # seconds between heartbeats while Redis does not answer
SETTLE_RETRY = 0.5         # seconds between checks for Redis while settlements wait for it


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class Controller:
    """Start with `await start()`, stop with `await stop()`; `agi_port` is the bound FastAGI port."""

    def __init__(self, settings: Settings, *, redis_url: str, clock: Any = None, catalog: Any = None,
                 policy: Policy | None = None, instance: str | None = None, names_dir: str | None = None,
                 sql_url: str | None = None, run_sync: bool = True, agi_bind: str | None = None,
                 reap_interval: float = 30.0, sync_interval: float = 0.5,
                 screening_margin: int = 120, adopt_interval: float = HEARTBEAT_TTL / 3,
                 gateway: Any = None, card_jobs_interval: float | None = None) -> None:
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
        self.adopt_interval = adopt_interval      # real seconds, like the heartbeat's TTL
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
        self._trail_thread: threading.Thread | None = None     # payments/trail_sync.py's TrailSync
        self._trail_worker: Any = None
        self._adopted: set[str] = set()          # calls adopted here and watched until they end
        self._started_at = 0.0
        self._redis_run_id: str | None = None
        self._redis_restarted = False
        self.metrics = Metrics()
        self.health: HealthServer | None = None
        self.draining = False
        self._roster_engine: Any = None
        self._gateway = gateway                  # None: from settings (payment_gateway)
        self.card_jobs_interval = card_jobs_interval    # None: settings.autoreload_poll_seconds
        self.card_jobs: Any = None

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
        self.ledger = TimedLedger(await Ledger.connect(self.redis_url, partitions=s.ledger_partitions,
                                                       max_amount=s.max_amount), self.metrics)
        self.store = CallStore.from_url(self.redis_url)
        self.meter = Meter(self.ledger, self.store, self.clock, on_refused=self._funds_gone)
        self.ctx = FlowContext(
            settings=s, clock=self.clock, ledger=self.ledger, catalog=catalog, policy=policy,
            store=self.store, meter=self.meter, speech=speech, instance=self.instance,
            names_dir=self.names_dir or "", screening_margin=self.screening_margin,
        )
        if s.notify_unfunded_hours > 0:
            from callcontrol.notices import UnfundedNotices
            self.ctx.unfunded_notice = UnfundedNotices(self.sql_url, s.notify_unfunded_hours)
        if self.sql_url:
            from callcontrol.holder_data import HolderData
            self.ctx.holder_data = HolderData(self.sql_url, days=s.call_request_days, catalog=catalog,
                                              clock=self.clock)
            await self.ctx.holder_data.start()
        routes: dict[str, Handler] = {
            "inmate-call": partial(inmate_call, self.ctx),
            "screen": partial(screen, self.ctx),
            "hangup": partial(hangup_route, self.ctx),
            "deposit": deposit_route(self.ctx, self._gateway),
            "alert": alert_route,
        }
        self.ctx.gateway = self.ctx.gateway or getattr(routes["deposit"], "gateway", None)
        deadlines = Deadlines(reply=s.agi_reply_timeout, dial_grace=s.agi_dial_grace,
                              lengths=prompt_lengths(PROMPTS_DIR))
        self.agi = AGIServer(routes, allow=s.agi_allow, deadlines=deadlines)
        self.agi.timing = self.metrics
        host, _, port = self.agi_bind.rpartition(":")
        await self.agi.start(host or "127.0.0.1", int(port))
        self._started_at = self.clock.now()
        await self._heartbeat_once()
        if s.ami_user:
            await self._start_ami()
        self._tasks = [
            asyncio.create_task(self.meter.run(self._stop), name="meter"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._reaper(), name="reaper"),
            asyncio.create_task(self._adopter(), name="adopter"),
            asyncio.create_task(self._settler(), name="settler"),
        ]
        if self.run_sync:
            self._start_sync()
        every = s.autoreload_poll_seconds if self.card_jobs_interval is None else self.card_jobs_interval
        if self.ctx.gateway is not None and every > 0:
            from callcontrol.card_jobs import CardJobs
            self.card_jobs = await CardJobs(self.sql_url, self.ledger, self.ctx.gateway, s.payment_gateway,
                                            every).open()
            self._tasks.append(asyncio.create_task(self.card_jobs.run(self._stop), name="card-jobs"))
        if s.metrics_bind:
            await self._start_health(s.metrics_bind)
        if self._policy is None:                 # the SQL roster overrides the TOML one (docs/operations.md)
            await self._reload_roster(policy, {})
            self._tasks.append(asyncio.create_task(self._roster_poll(policy), name="roster"))
        await self.recover()
        log.info("controller_started", instance=self.instance, agi_port=self.agi.port,
                 ami=bool(self.ami), sync=self.run_sync, card_jobs=self.card_jobs is not None)
        return self

    async def _start_health(self, bind: str) -> None:
        """/metrics, /healthz, /readyz; the gauges that need Redis are sampled by the background loops."""
        ctx, m = self.ctx, self.metrics
        assert ctx is not None
        m.calls_in_progress.set_function(lambda: len(ctx.sessions))
        m.ami_connected.set_function(lambda: int(bool(self.ami is not None and self.ami.connected)))
        checks = {"redis": self._ready_redis, "sql": self._ready_sql}
        if self.settings.ami_user:
            checks["ami"] = self._ready_ami
        self.health = HealthServer(m, checks, draining=lambda: self.draining)
        await self.health.start(bind)
        self._tasks.append(asyncio.create_task(self._sample_sync_lag(), name="sync-lag"))

    async def _ready_redis(self) -> None:
        assert self.store is not None
        await self.store.ping()

    async def _ready_sql(self) -> None:
        from sqlalchemy import text

        from ledger.sql import make_engine

        def check() -> None:
            engine = make_engine(self.sql_url)
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            finally:
                engine.dispose()

        await asyncio.to_thread(check)

    async def _ready_ami(self) -> None:
        if self.ami is None or not self.ami.connected:
            raise ConnectionError("AMI not logged in")

    async def _sample_sync_lag(self, every: float = 5.0) -> None:
        while not self._stop.is_set():
            try:
                oldest = await self.ledger.oldest_unsynced()
                self.metrics.sync_lag.set(0 if oldest is None else max(0.0, time.time() - oldest))
            except Exception as exc:
                log.warning("sync_lag_unknown", error=type(exc).__name__)
            await asyncio.sleep(every)

    async def _roster_poll(self, policy: Policy) -> None:
        seen: dict[str, int] = {}
        while not self._stop.is_set():
            seen = await self._reload_roster(policy, seen)
            await asyncio.sleep(self.settings.roster_poll_seconds)

    async def _reload_roster(self, policy: Policy, seen: dict[str, int]) -> dict[str, int]:
        """Apply the facilities whose roster version moved; one small query when none did."""
        from callcontrol.roster import store
        from ledger.sql import make_engine

        def fetch() -> tuple[dict[str, int], dict[str, Any]]:
            if self._roster_engine is None:
                # Once per process: with no roster imported `seen` stays empty, and migrating on every
                # poll took SQLite's write lock from the sync worker under load (records stopped syncing).
                store.migrate(self.sql_url)
                self._roster_engine = make_engine(self.sql_url)
            now = store.current_versions(self._roster_engine)
            engine = self._roster_engine
            return now, {f: store.load(engine, f) for f, v in now.items() if seen.get(f) != v}

        try:
            now, changed = await asyncio.to_thread(fetch)
        except Exception as exc:
            log.warning("roster_unavailable", error=type(exc).__name__)   # keep the roster we have
            return seen
        for facility_id, roster in changed.items():
            policy.apply_roster(facility_id, roster)
            log.info("roster_loaded", facility_id=facility_id, version=now[facility_id], inmates=len(roster))
        return now

    # ------------------------------------------------------------------ drain
    def _in_progress(self) -> list[str]:
        """Calls this process still runs, meters, watches or owes a settlement."""
        assert self.ctx is not None and self.meter is not None
        ctx = self.ctx
        return sorted(set(ctx.sessions) | set(self.meter.calls) | set(ctx.unsettled) | self._adopted)

    async def drain(self, seconds: float, force: asyncio.Event | None = None) -> list[str]:
        """Refuse new inmate calls; wait until the calls in progress are over (metered and settled) or
        `seconds` pass (or `force` is set). Returns the calls still up: stop() ends this instance's
        heartbeat, so another instance adopts and settles them."""
        assert self.agi is not None
        self.draining = True
        self.metrics.draining.set(1)
        self.agi.routes["inmate-call"] = refuse_draining
        log.info("drain_started", calls=len(self._in_progress()), deadline_seconds=seconds)
        end = time.monotonic() + seconds
        forget_at = 0.0
        while self._in_progress() and time.monotonic() < end and not (force and force.is_set()):
            if time.monotonic() >= forget_at:
                forget_at = time.monotonic() + 1.0
                with contextlib.suppress(Exception):
                    await self._forget_settled_elsewhere()
            await asyncio.sleep(0.1)
        left = self._in_progress()
        if left:
            log.warning("drain_deadline_passed", calls=len(left), call_ids=left[:100],
                        hint="left to adoption by another instance")
        else:
            log.info("drain_complete")
        return left

    async def _forget_settled_elsewhere(self) -> None:
        """Stop metering and watching the calls another instance has settled. Behind several controllers
        a call's screening (which starts the meter) and its hangup AGI may reach another instance than
        its inmate session; the meter would notice the resolved hold only at the next increment, and a
        drain would wait for it."""
        assert self.ctx is not None and self.meter is not None and self.store is not None
        ctx = self.ctx
        ids = [cid for cid in set(self.meter.calls) | self._adopted
               if cid not in ctx.sessions and cid not in ctx.unsettled]
        states = await asyncio.gather(*(self.store.get(cid) for cid in ids))
        for call_id, state in zip(ids, states, strict=True):
            if state is None or state.settled:
                self.meter.stop(call_id)
                self._adopted.discard(call_id)

    async def stop(self, grace: float = 2.0) -> None:
        self._stop.set()
        if self.health is not None:
            await self.health.stop()
        if self.agi is not None:
            await self.agi.stop(grace)
            drain = getattr(self.agi.routes.get("deposit"), "drain", None)
            if drain is not None:           # card charges run on after their call: let them finish
                await drain()
        data = getattr(self.ctx, "holder_data", None)
        if data is not None:                # requests being marked answered: a moment, then the engine goes
            with contextlib.suppress(Exception):
                await asyncio.wait_for(data.drain(), 5)
            data.close()
        notices = getattr(self.ctx, "unfunded_notice", None)
        if notices is not None:             # notices being written: a moment, then the engine goes
            with contextlib.suppress(Exception):
                await asyncio.wait_for(notices.drain(), 5)
            notices.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ami is not None:
            with contextlib.suppress(Exception):
                await self.ami.close()
        self._sync_stop.set()
        for thread in (self._sync_thread, self._trail_thread):
            if thread is not None:
                await asyncio.to_thread(thread.join, 10)
        for worker in (self._sync_worker, self._trail_worker):
            if worker is not None:
                with contextlib.suppress(Exception):
                    worker.close()
        if self._roster_engine is not None:
            self._roster_engine.dispose()
        if self.card_jobs is not None:
            self.card_jobs.close()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.end_heartbeat(self.instance)
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
        self.ami.on_event("DialBegin", self._on_dial_begin)
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

    def _on_dial_begin(self, msg: Any) -> None:
        """Remember the recipient's leg of a call this process dials (to hang it up with the caller)."""
        assert self.ctx is not None
        caller = msg.get("Channel", "")
        if caller in self.ctx.dialling and msg.get("DestChannel"):
            self.ctx.dial_legs[caller] = msg["DestChannel"]

    async def _on_caller_hangup_request(self, msg: Any) -> None:
        """The caller's channel is going down while its inmate session waits in EXEC Dial.

        Asterisk tells that AGI only when Dial returns, and Dial first runs the recipient's screening
        to its end: fix the call's end now (first writer wins), so that a recipient who presses 1
        afterwards is neither connected nor billed (acceptance of an ended call is refused), and stop
        metering a call that is over. Then hang up the recipient's leg: a recipient still in screening
        would otherwise hear the announcement out (up to three times) for a caller who has gone."""
        assert self.ctx is not None and self.store is not None and self.meter is not None
        caller = msg.get("Channel", "")
        call_id = self.ctx.dialling.get(caller)
        if call_id:
            self.meter.stop(call_id)
            now = self.clock.now()
            try:
                await self.store.finish(call_id, now, "caller_hangup")
            except Exception:      # Redis down: the session's settlement takes this end from memory
                self.ctx.unsettled.setdefault(call_id, Ended(now, "caller_hangup"))
            leg = self.ctx.dial_legs.pop(caller, None)
            if leg and self.ami is not None:
                with contextlib.suppress(Exception):     # already gone, or AMI down: Dial ends it later
                    await self.ami.hangup(leg)

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
        await self.store.heartbeat(self.instance, HEARTBEAT_TTL)

    async def _heartbeat(self) -> None:
        while not self._stop.is_set():
            try:
                await self._heartbeat_once()
                await asyncio.sleep(HEARTBEAT_TTL / 3)
            except Exception:
                await asyncio.sleep(HEARTBEAT_RETRY)

    async def _reaper(self) -> None:
        """Last resort: void holds whose lease ran out."""
        while not self._stop.is_set():
            await self.clock.sleep(self.reap_interval)
            m = self.metrics
            try:
                m.reaped.inc(len(await self.ledger.reap_expired()))
                m.reaper_runs.labels("ok").inc()
                count, earliest = await self.ledger.hold_queue()
                m.holds_pending.set(count)
                m.hold_overdue.set(0 if earliest is None else self.clock.now() - earliest)
            except Exception as exc:
                m.reaper_runs.labels(type(exc).__name__).inc()
                log.warning("reaper_failed", error=type(exc).__name__)

    async def _adopter(self) -> None:
        """Adopt the calls of instances whose heartbeat is gone (and settle our own lost ones)."""
        assert self.ctx is not None
        while not self._stop.is_set():
            await asyncio.sleep(self.adopt_interval)
            try:
                await self.recover()
                await finish_open(self.ctx)      # cards of paid calls whose end is settled
            except Exception as exc:
                log.warning("recovery_failed", error=type(exc).__name__)

    async def _settler(self) -> None:
        """Settle, as soon as Redis answers again, the calls whose settlement failed while it was down."""
        assert self.ctx is not None and self.store is not None
        while not self._stop.is_set():
            await asyncio.sleep(SETTLE_RETRY)
            if not self.ctx.unsettled:
                continue
            try:
                await self.store.ping()
            except Exception:
                continue
            waiting = len(self.ctx.unsettled)
            settled = await retry_unsettled(self.ctx)
            log.info("settlements_retried", waiting=waiting, settled=settled, left=len(self.ctx.unsettled))

    def _start_sync(self) -> None:
        from ledger.sql import migrate
        from ledger.sync import SyncWorker
        from payments.trail_sync import TrailSync

        migrate(self.sql_url)
        worker = SyncWorker(self.redis_url, self.sql_url, partitions=self.settings.ledger_partitions)
        self._sync_worker = worker
        # Migrated here, not in its thread: Alembic runs are not thread-safe (card jobs migrate next).
        self._trail_worker = TrailSync(self.redis_url, self.sql_url)

        def run() -> None:
            try:
                worker.run_forever(self._sync_stop, on_synced=self.metrics.synced.inc)
            except Exception:
                log.exception("sync_worker_failed")

        self._sync_thread = threading.Thread(target=run, name="ledger-sync", daemon=True)
        self._sync_thread.start()
        self._trail_thread = threading.Thread(target=self._run_trail_sync, name="paytrail-sync", daemon=True)
        self._trail_thread.start()

    def _run_trail_sync(self) -> None:
        """The 800 line's payment trail -> SQL (`payments sync --forever` in this process). Its own thread:
        a SQL outage only makes the copy lag (its entries stay pending), and never slows the ledger's."""
        try:
            self._trail_worker.run_forever(self._sync_stop)
        except Exception:
            log.exception("paytrail_sync_failed")

    # ------------------------------------------------------------------ recovery
    async def _alive(self, instance: str) -> bool:
        assert self.store is not None
        if not instance or instance == self.instance:
            return False
        return await self.store.alive(instance)

    async def _redis_just_restarted(self) -> bool:
        """Redis restarted moments ago (since we first saw it): a live instance may not have renewed yet
        a heartbeat lost with it, so its calls are not adopted until every heartbeat has had its turn."""
        assert self.store is not None
        info = await self.store.server_info()
        run_id = str(info.get("run_id", ""))
        if self._redis_run_id not in (None, run_id):
            log.warning("redis_restart_seen", uptime=info.get("uptime_in_seconds"))
            self._redis_restarted = True
        self._redis_run_id = run_id
        return self._redis_restarted and int(info.get("uptime_in_seconds", 0)) < HEARTBEAT_TTL / 3 + 2

    def _watched(self, call_id: str) -> bool:
        """A call this process is running, metering, settling or watching (adopted)."""
        assert self.ctx is not None and self.meter is not None
        return (call_id in self.ctx.sessions or call_id in self.meter.calls or call_id in self.ctx.unsettled
                or call_id in self._adopted)

    async def recover(self) -> dict[str, int]:
        """Finish the unsettled calls nobody else will: adopt those of instances whose heartbeat is gone
        (one claim in Redis each, so exactly one survivor adopts a call), and settle our own calls whose
        session is over but whose settlement was lost.

        An adopted call whose end is stored is settled at it. With AMI, CoreShowChannels tells which of
        the others are still up: those are metered on from the captured increment (never past the hold:
        Dial's L() ends the call there) and settled on their AMI Hangup or hangup AGI; the others are
        settled at the increments captured. Without AMI, a call whose lease has run out is settled that
        way and any other is metered on until its hangup AGI, which any instance may receive.
        """
        assert self.store is not None and self.ctx is not None and self.meter is not None
        counts = {"adopted": 0, "settled": 0, "skipped": 0}
        live = await self.store.live_calls()
        self._adopted &= {call_id for call_id, _ in live}
        todo = [(call_id, lease) for call_id, lease in live if not self._watched(call_id)]
        if not todo:
            return counts
        restarted = await self._redis_just_restarted()
        states = await asyncio.gather(*(self.store.get(call_id) for call_id, _ in todo))
        orphans: list[tuple[CallState, float]] = []
        alive: dict[str, bool] = {}
        for (call_id, lease), state in zip(todo, states, strict=True):
            if state is None or state.settled:       # settled: its removal from the index was lost
                await self.store.drop_live(call_id)
                continue
            if self._watched(call_id):
                continue
            if state.instance == self.instance and state.created_at >= self._started_at:
                # Ours, and its session is over (a session lasts as long as its call): the settlement
                # was lost (e.g. with the tail of Redis' AOF), so the call is over.
                await self._settle_ended(state, "resettled")
                counts["settled"] += 1
                continue
            if state.instance not in alive:
                alive[state.instance] = await self._alive(state.instance)
            if restarted or alive[state.instance]:
                counts["skipped"] += 1
                continue
            if not await self.store.claim(call_id, state.instance, self.instance):
                counts["skipped"] += 1               # another instance adopted it first
                continue
            log.info("call_adopted", call_id=call_id, owner=state.instance)
            counts["adopted"] += 1
            orphans.append((state, lease))
        channels: set[str] | None = None
        if self.ami is not None and self.ami.connected and any(not s.ended_at for s, _ in orphans):
            try:
                channels = {ev.get("Channel", "") for ev in await self.ami.core_show_channels()}
            except Exception as exc:
                log.warning("recovery_no_channel_list", error=type(exc).__name__)
        now = self.clock.now()
        for state, lease in orphans:
            if state.ended_at or (channels is not None and state.caller_channel not in channels) or (
                    channels is None and lease < now):
                await self._settle_ended(state, "adopted")
                counts["settled"] += 1
            else:
                self._watch(state)
        if any(counts.values()):
            log.info("recovery", **counts)
        return counts

    def _watch(self, state: CallState) -> None:
        """Meter an adopted call that is still up until its AMI Hangup or hangup AGI settles it."""
        assert self.ctx is not None and self.meter is not None
        self._adopted.add(state.call_id)
        if state.caller_channel:
            self.ctx.orphans[state.caller_channel] = state.call_id
        if state.accepted_at:
            quote = self.ctx.quote_for(state)
            self.meter.start(MeteredCall(state.call_id, state.account, state.accepted_at, state.increment,
                                         quote.increment_charge, state.hold_amount, state.captured_k,
                                         state.captured))

    async def _settle_ended(self, state: CallState, reason: str) -> None:
        """Settle a call that is over: at its stored end, else at the increments captured."""
        assert self.ctx is not None
        if not state.ended_at:
            await self._settle_lost(state)
            return
        with contextlib.suppress(Exception):
            await settle_call(self.ctx, state.call_id, state.ended_at, reason)

    async def _settle_lost(self, state: CallState) -> None:
        """The call ended while no controller watched it: its end is unknown, so charge no more than
        the increments already captured (the family is never billed for time nobody measured)."""
        assert self.ctx is not None
        # One second past acceptance: final_total() then charges max(captured, first increment).
        ended = state.accepted_at + 1 if state.accepted_at else self.clock.now()
        with contextlib.suppress(Exception):
            await settle_call(self.ctx, state.call_id, ended, "recovered")


async def refuse_draining(ch: Any) -> None:
    """A new inmate call reached a draining controller: flag it and end the session at once, so the
    dialplan sends it to another controller (docs/asterisk.md). Nothing is held or recorded."""
    await ch.set_variable("APC_DRAINING", "1")
