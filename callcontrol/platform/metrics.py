"""Prometheus metrics and the /metrics, /healthz, /readyz HTTP endpoint of one controller process.

Labels are bounded sets only (outcome and reason codes, AGI command words, ledger op names, error
classes): never a call id, number or argument, so the hot path costs one dictionary look-up and an
observation per event. Gauges that need I/O (holds pending, sync lag) are sampled by the controller's
background loops, never computed on a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = structlog.get_logger("callcontrol.metrics")

FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Ledger calls that are money or call records; the wrapper times these and nothing else.
LEDGER_OPS = ("open_account", "find_account", "balance", "deposit", "refund", "adjust", "freeze", "unfreeze",
              "close_account", "hold", "capture", "settle", "void", "hold_info", "reap_expired",
              "record_call", "set_block", "is_blocked")

ReadyCheck = Callable[[], Awaitable[None]]


class Metrics:
    """One registry per controller (tests run several controllers in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "advancepay_"
        self.calls_in_progress = Gauge(p + "calls_in_progress", "inmate-call sessions open here", registry=r)
        self.setups = Counter(p + "call_setups", "call attempts by outcome and reason (call records)",
                              ["outcome", "reason"], registry=r)
        self.authorization = Histogram(p + "authorization_seconds", "env block received -> EXEC Dial sent",
                                       buckets=FAST, registry=r)
        self.agi = Histogram(p + "agi_command_seconds", "AGI command round trip (EXEC Dial excluded)",
                             ["command"], buckets=(*FAST, 10.0, 30.0), registry=r)
        self.ledger = Histogram(p + "ledger_op_seconds", "ledger operation latency", ["op"],
                                buckets=FAST, registry=r)
        self.ledger_errors = Counter(p + "ledger_errors", "ledger operations that raised", ["op", "error"],
                                     registry=r)
        self.deposits = Counter(p + "deposits", "ledger deposits by result (ok or error class)", ["result"],
                                registry=r)
        self.holds_pending = Gauge(p + "holds_pending", "pending holds (sampled by the reaper)", registry=r)
        self.hold_overdue = Gauge(p + "hold_oldest_overdue_seconds", "now minus the earliest pending hold's "
                                  "lease expiry (negative: not yet due; sampled by the reaper)", registry=r)
        self.reaped = Counter(p + "reaper_voided_holds", "holds voided by the reaper", registry=r)
        self.reaper_runs = Counter(p + "reaper_runs", "reaper passes by result", ["result"], registry=r)
        self.sync_lag = Gauge(p + "sync_lag_seconds", "age of the oldest journal entry not yet in SQL "
                              "(0: none waiting)", registry=r)
        self.synced = Counter(p + "sync_entries", "journal entries written to SQL by this process "
                              "(rate() is entries/s)", registry=r)
        self.ami_connected = Gauge(p + "ami_connected", "1 while the AMI watchdog is logged in", registry=r)
        self.draining = Gauge(p + "draining", "1 once SIGTERM started the drain", registry=r)
        self._op_hist = {op: self.ledger.labels(op) for op in LEDGER_OPS}

    # -- hooks (cheap: called on the hot path) ------------------------------------------------------
    def command(self, label: str, seconds: float) -> None:
        self.agi.labels(label).observe(seconds)

    def dial(self, since_env: float) -> None:
        self.authorization.observe(since_env)

    def record(self, fields: dict[str, Any]) -> None:
        self.setups.labels(str(fields.get("outcome", "")), str(fields.get("reason", ""))).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class TimedLedger:
    """The ledger with each money operation timed and its failures counted by error class; the call
    records it writes also count set-ups by outcome and reason."""

    def __init__(self, ledger: Any, metrics: Metrics) -> None:
        self._ledger = ledger
        self._metrics = metrics
        for op in LEDGER_OPS:
            if hasattr(ledger, op):
                setattr(self, op, self._timed(op, getattr(ledger, op)))

    def __getattr__(self, name: str) -> Any:      # everything not timed passes through
        return getattr(self._ledger, name)

    def _timed(self, op: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        m = self._metrics
        hist = m._op_hist[op]

        async def call(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                result = await fn(*args, **kw)
            except Exception as exc:
                m.ledger_errors.labels(op, type(exc).__name__).inc()
                if op == "deposit":
                    m.deposits.labels(type(exc).__name__).inc()
                raise
            hist.observe(time.perf_counter() - t0)
            if op == "record_call" and len(args) > 1:
                m.record(args[1])
            elif op == "deposit":
                m.deposits.labels("ok").inc()
            return result

        return call


class HealthServer:
    """GET /metrics, /healthz (the process answers) and /readyz (every dependency answers, and the
    controller is not draining: 503 naming what failed otherwise). Plain HTTP/1.0 on the event loop."""

    def __init__(self, metrics: Metrics, checks: Mapping[str, ReadyCheck], *,
                 draining: Callable[[], bool] = lambda: False, timeout: float = 2.0) -> None:
        self.metrics = metrics
        self.checks = checks
        self.draining = draining
        self.timeout = timeout
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, bind: str) -> None:
        host, _, port = bind.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host or "127.0.0.1", int(port))
        log.info("metrics_listening", port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def failing(self) -> list[str]:
        """Names of the dependencies that do not answer within the timeout."""
        names = list(self.checks)

        async def one(name: str) -> str | None:
            try:
                await asyncio.wait_for(self.checks[name](), self.timeout)
                return None
            except Exception as exc:
                return f"{name}: {type(exc).__name__}"

        found = await asyncio.gather(*(one(n) for n in names))
        return [f for f in found if f]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)).strip():
                pass                                       # headers: none matter
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            status, ctype, body = await self._route(path)
            head = (f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, path: str) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics.exposition()
        if path == "/healthz":
            return "200 OK", text, b"ok\n"
        if path == "/readyz":
            failed = (["draining"] if self.draining() else []) + await self.failing()
            if failed:
                return "503 Service Unavailable", text, _lines(failed)
            return "200 OK", text, b"ready\n"
        return "404 Not Found", text, b"not found\n"


def _lines(items: Iterable[str]) -> bytes:
    return "".join(f"{i}\n" for i in items).encode()
