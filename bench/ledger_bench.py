"""Ledger throughput on this machine (prints figures; not a test).

(a) a no-op Lua script through the ledger's own client stack (the baseline), (b) holds/s and
(c) hold -> capture -> settle cycles/s at concurrency 1, 16 and 256, all against a local embedded
redis-server with AOF on; (d) journal -> SQL entries/s into SQLite and PostgreSQL. Ratios are against
the baseline measured in the same run, so they mean something on any box.

LEDGER_BENCH_ONLY=sync runs (d) alone, on a journal of the same mix written without timing it;
LEDGER_BENCH_ONLY=ledger runs (a) to (c) alone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from callcontrol.platform.redis_server import EmbeddedRedis
from ledger import Ledger
from ledger.core import DEFAULT_IDEMPOTENCY_TTL
from ledger.keys import Keys, key_slot
from ledger.scripts import make
from ledger.transport import open_transport

CONCURRENCY = (1, 16, 256)
ACCOUNTS = 10_000         # calls spread over many accounts, as in a real facility
DURATION = float(os.environ.get("LEDGER_BENCH_SECONDS", "3"))   # per measurement
ONLY = os.environ.get("LEDGER_BENCH_ONLY", "")                  # "sync": (d) alone; "ledger": (a)-(c)
_ids = itertools.count()
# The baseline: the cheapest script, with a ledger script's keys and arguments, through the same client
# stack (a Transport of its own: the ledger has no bench hook).
NOOP = make("noop", "return '=ok'")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, tuple[float, float]] = {}   # figure -> (redis-server CPU us/op, client CPU us/op)
REDIS_PID = 0
REDIS_VERSION = "?"   # the figures differ between Redis 6.2 and 7.x


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
    global REDIS_VERSION
    led = await Ledger.connect(url)
    info = await led._t.command(0, "INFO", "server")
    REDIS_VERSION = info.split("redis_version:", 1)[1].split()[0]
    accounts = await asyncio.gather(*(led.open_account(f"bench-o{i}", "BENCH", f"+1415{i:07d}")
                                      for i in range(ACCOUNTS)))
    await asyncio.gather(*(led.deposit(f"bench-d{i}", a, 100_000) for i, a in enumerate(accounts)))

    transport = await open_transport(url, cluster=False, timeout=5.0)
    keys = Keys(0)
    noop_keys = (keys.op("bench", "noop"), keys.journal)
    noop_args = ("noop", "0" * 32, "0", str(DEFAULT_IDEMPOTENCY_TTL), "bench")

    async def noop(_w: int) -> object:
        return await transport.script(NOOP, key_slot(keys.journal), noop_keys, noop_args)

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
    await transport.close()
    await led.close()
    return out


async def fill_journal(url: str, holds: int = 76_000, cycles: int = 24_000) -> None:
    """The journal a full run leaves for (d): opens and deposits on every account, then holds, then
    hold -> capture -> settle cycles (about the counts (b) and (c) reach here), 256 at a time."""
    led = await Ledger.connect(url)
    accounts = await asyncio.gather(*(led.open_account(f"bench-o{i}", "BENCH", f"+1415{i:07d}")
                                      for i in range(ACCOUNTS)))
    await asyncio.gather(*(led.deposit(f"bench-d{i}", a, 100_000) for i, a in enumerate(accounts)))
    ids = itertools.count()

    async def holder() -> None:
        while (n := next(ids)) < holds:
            await led.hold(f"bh{n}", accounts[n % ACCOUNTS], f"h{n}", 1, lease_seconds=3_600)

    async def cycler() -> None:
        while (n := next(ids)) < holds + cycles:
            a = accounts[n % ACCOUNTS]
            await led.hold(f"ch{n}", a, f"c{n}", 300, lease_seconds=3_600)
            await led.capture(f"cc{n}", a, f"c{n}", 100)
            await led.settle(f"cs{n}", a, f"c{n}", 150)

    await asyncio.gather(*(holder() for _ in range(256)))
    await asyncio.gather(*(cycler() for _ in range(256)))
    await led.close()


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (runuser -> postmaster -> backends)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parent[child] = int(fields[1])
        cpu[child] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p, seconds in cpu.items():
        q = p
        while q > 1 and q != pid:
            q = parent.get(q, 0)
        if q == pid:
            total += seconds
    return total


def sync_rate(redis_url: str, sql_url: str, group: str, keep_journal: bool = True,
              server_pid: int = 0) -> tuple[int, float, float, float]:
    """Drains the whole journal into `sql_url`: entries, entries/s, and CPU us per entry of this process
    and of the database server (`server_pid` and its children; 0 without one)."""
    from ledger.sync import SyncWorker

    worker = SyncWorker(redis_url, sql_url, group=group, trim=False, batch=2_000, keep_journal=keep_journal)
    server0 = tree_cpu(server_pid) if server_pid else 0.0
    cpu0, start = time.process_time(), time.perf_counter()
    n = worker.drain()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    server = tree_cpu(server_pid) - server0 if server_pid else 0.0
    worker.close()
    return n, n / elapsed, cpu * 1e6 / n, server * 1e6 / n


def checkpoint(port: int) -> None:
    """Each PostgreSQL figure starts clean: no checkpoint of the previous run's writes lands in it."""
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute("CHECKPOINT")


def sync_figures(redis_url: str, tmp: Path) -> None:
    from tests.support.servers import PostgresServer

    n, rate, cpu, _ = sync_rate(redis_url, f"sqlite:///{tmp / 'bench.sqlite3'}", "bench-sqlite")
    print(f"(d) journal -> SQLite:     {rate:>10,.0f} entries/s ({n:,} entries; "
          f"CPU us/entry: worker {cpu:.1f})")
    pg = PostgresServer().start()
    try:
        pid = pg.proc.pid  # type: ignore[union-attr]
        full, lean = pg.create_database("ledger_bench"), pg.create_database("ledger_bench_lean")
        checkpoint(pg.port)
        n, rate, cpu, server = sync_rate(redis_url, full, "bench-pg", server_pid=pid)
        checkpoint(pg.port)
        _, lean_rate, lean_cpu, lean_server = sync_rate(redis_url, lean, "bench-pg-lean", keep_journal=False,
                                                        server_pid=pid)
    finally:
        pg.stop()
    print(f"(d) journal -> PostgreSQL: {rate:>10,.0f} entries/s ({n:,} entries; target >= 20,000; "
          f"CPU us/entry: worker {cpu:.1f}, postgres {server:.1f})")
    print(f"    without the ledger_journal audit copy: {lean_rate:,.0f} entries/s "
          f"(CPU us/entry: worker {lean_cpu:.1f}, postgres {lean_server:.1f})")


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
        if ONLY == "sync":
            asyncio.run(fill_journal(server.url))
            sync_figures(server.url, Path(tmp))
            return
        figures = asyncio.run(ledger_figures(server.url))
        print(f"ledger client stack: auto-pipelined RESP over a unix socket, hiredis parser, {loop_name}; "
              f"embedded redis-server {REDIS_VERSION} with AOF (appendfsync everysec); "
              f"{DURATION:.0f} s per figure")
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
        if ONLY != "ledger":
            sync_figures(server.url, Path(tmp))


if __name__ == "__main__":
    main()
