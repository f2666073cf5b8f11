"""Ledger throughput on this machine (prints figures; not a test).

(a) a no-op Lua script through the ledger's own client stack (the baseline), (b) holds/s and
(c) hold -> capture -> settle cycles/s at concurrency 1, 16 and 256, all against a local embedded
redis-server with AOF on; (d) journal -> SQL entries/s into SQLite and PostgreSQL. Ratios are against
the baseline measured in the same run, so they mean something on any box.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from callcontrol.redis_server import EmbeddedRedis
from ledger import Ledger

CONCURRENCY = (1, 16, 256)
ACCOUNTS = 10_000         # calls spread over many accounts, as in a real facility
DURATION = float(os.environ.get("LEDGER_BENCH_SECONDS", "3"))   # per measurement
_ids = itertools.count()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, tuple[float, float]] = {}   # figure -> (redis-server CPU us/op, client CPU us/op)
REDIS_PID = 0


async def rate(concurrency: int, op: Callable[[int], Awaitable[object]], ops_per_call: int = 1,
               name: str = "") -> float:
    """Calls/s of `op` from `concurrency` tasks looping for DURATION seconds; also records the CPU each
    side spent per call (a figure other processes on the box disturb much less than a rate)."""
    stop = time.perf_counter() + DURATION
    done = 0
    redis0, client0 = cpu_seconds(REDIS_PID), time.process_time()

    async def worker(w: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await op(w)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    if name and done:
        CPU[name] = ((cpu_seconds(REDIS_PID) - redis0) * 1e6 / done,
                     (time.process_time() - client0) * 1e6 / done)
    return done * ops_per_call / elapsed


async def ledger_figures(url: str) -> dict[str, float]:
    led = await Ledger.connect(url)
    accounts = await asyncio.gather(*(led.open_account(f"bench-o{i}", "BENCH", f"+1415{i:07d}")
                                      for i in range(ACCOUNTS)))
    await asyncio.gather(*(led.deposit(f"bench-d{i}", a, 100_000) for i, a in enumerate(accounts)))

    async def noop(_w: int) -> object:
        return await led._noop()

    async def hold(_w: int) -> object:
        n = next(_ids)
        return await led.hold(f"bh{n}", accounts[n % ACCOUNTS], f"h{n}", 1, lease_seconds=3_600)

    async def cycle(_w: int) -> object:
        n = next(_ids)
        a = accounts[n % ACCOUNTS]
        await led.hold(f"ch{n}", a, f"c{n}", 300, lease_seconds=3_600)
        await led.capture(f"cc{n}", a, f"c{n}", 100)
        return await led.settle(f"cs{n}", a, f"c{n}", 150)

    out: dict[str, float] = {}
    for kind, fn in (("noop", noop), ("hold", hold), ("cycle", cycle)):
        for c in CONCURRENCY:
            out[f"{kind}@{c}"] = await rate(c, fn, name=f"{kind}@{c}")
    await led.close()
    return out


def sync_rate(redis_url: str, sql_url: str, group: str, keep_journal: bool = True) -> tuple[int, float]:
    from ledger.sync import SyncWorker

    worker = SyncWorker(redis_url, sql_url, group=group, trim=False, batch=2_000, keep_journal=keep_journal)
    start = time.perf_counter()
    n = worker.drain()
    elapsed = time.perf_counter() - start
    worker.close()
    return n, n / elapsed


def main() -> None:
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    with tempfile.TemporaryDirectory(prefix="apc-ledger-bench-") as tmp, \
            EmbeddedRedis(Path(tmp) / "redis") as server:
        global REDIS_PID
        REDIS_PID = server.proc.pid  # type: ignore[union-attr]
        figures = asyncio.run(ledger_figures(server.url))
        print(f"ledger client stack: auto-pipelined RESP over a unix socket, hiredis parser, {loop_name}; "
              f"embedded redis-server with AOF (appendfsync everysec); {DURATION:.0f} s per figure")
        print(f"{'concurrency':>12} {'(a) noop/s':>12} {'(b) holds/s':>12} {'(c) cycles/s':>13} "
              f"{'(b)/(a)':>8} {'ops/s in (c)':>13}")
        for c in CONCURRENCY:
            a, b, cyc = figures[f"noop@{c}"], figures[f"hold@{c}"], figures[f"cycle@{c}"]
            print(f"{c:>12} {a:>12,.0f} {b:>12,.0f} {cyc:>13,.0f} {b / a:>8.2f} {3 * cyc:>13,.0f}")
        best_a = max(figures[f"noop@{c}"] for c in CONCURRENCY)
        best_b = max(figures[f"hold@{c}"] for c in CONCURRENCY)
        print(f"best holds/s {best_b:,.0f} (target >= 15,000); "
              f"best (b)/(a) {best_b / best_a:.2f} (target >= 0.6)")
        print("CPU per call at concurrency 256 (redis-server / this client), and the rate one core each "
              "would sustain:")
        for kind in ("noop", "hold", "cycle"):
            r_us, c_us = CPU[f"{kind}@256"]
            print(f"  {kind:>5}: {r_us:6.1f} us / {c_us:6.1f} us  -> {1e6 / max(r_us, c_us):>9,.0f}/s")

        from tests.support.servers import PostgresServer

        n, sqlite_rate = sync_rate(server.url, f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", "bench-sqlite")
        print(f"(d) journal -> SQLite:     {sqlite_rate:>10,.0f} entries/s ({n:,} entries)")
        pg = PostgresServer().start()
        try:
            n, pg_rate = sync_rate(server.url, pg.create_database("ledger_bench"), "bench-pg")
            _, lean_rate = sync_rate(server.url, pg.create_database("ledger_bench_lean"), "bench-pg-lean",
                                     keep_journal=False)
        finally:
            pg.stop()
        print(f"(d) journal -> PostgreSQL: {pg_rate:>10,.0f} entries/s ({n:,} entries; target >= 20,000)")
        print(f"    without the ledger_journal audit copy: {lean_rate:,.0f} entries/s")


if __name__ == "__main__":
    main()
