"""Authorizations/s on one Redis Cluster master vs three, with Redis CPU per authorization (prints
figures; not a test).

An authorization is what a call set-up does in Redis: the ledger's hold (one Lua script on the
account's partition slot) and the call's state (HSET + EXPIRE + ZADD on the call's `{Cnn}` slot), in
that order, as flows/inmate_call.py does them. Both clusters are real redis-server processes in cluster
mode (AOF everysec, as the controller's own), reached through the controller's own client stack with a
`redis+cluster://` URL; the one-master cluster holds all 16,384 slots itself, so the client code path is
the same in both runs.

The load comes from CLUSTER_BENCH_CLIENTS processes (default 2) with 128 authorizations in flight each.
On a 2-core box the clients and the masters share the cores, so the rate cannot triple with three
masters; the per-authorization CPU of the redis-server processes (from /proc) and the time spent inside
the hold script (INFO commandstats) are what carry over to a box where each master has a core of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ledger_bench import cpu_seconds
from callcontrol.platform.redis_server import EmbeddedRedis

DURATION = float(os.environ.get("CLUSTER_BENCH_SECONDS", "5"))
CLIENTS = int(os.environ.get("CLUSTER_BENCH_CLIENTS", "2"))
IN_FLIGHT = 128                      # per client process
ACCOUNTS = 4_000
SLOTS = 16_384


# ------------------------------------------------------------------------------------------------
# A cluster of `masters` nodes without replicas (redis-cli --cluster create wants three at least)
# ------------------------------------------------------------------------------------------------

def _cli(port: int, *args: str) -> Any:
    import redis

    r = redis.Redis(port=port, decode_responses=True)
    try:
        return r.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        r.close()


def start_cluster(masters: int, tmp: Path) -> list[EmbeddedRedis]:
    from tests.support.servers import cluster_port

    nodes = [EmbeddedRedis(tmp / f"m{masters}-n{i}", port=cluster_port(), supervise=False,
                           extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                       "--cluster-node-timeout", "2000"]).start()
             for i in range(masters)]
    for i, node in enumerate(nodes):
        lo, hi = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
        _cli(node.port, "CLUSTER", "ADDSLOTS", *map(str, range(lo, hi + 1)))
        if i:
            _cli(node.port, "CLUSTER", "MEET", "127.0.0.1", str(nodes[0].port))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all("cluster_state:ok" in _cli(n.port, "CLUSTER", "INFO") and
               len(_cli(n.port, "CLUSTER", "SLOTS")) == masters for n in nodes):
            return nodes
        time.sleep(0.1)
    raise TimeoutError(f"a {masters}-master cluster did not reach cluster_state:ok")


def commandstats_usec(nodes: list[EmbeddedRedis]) -> tuple[float, int]:
    """(microseconds inside EVALSHA, EVALSHA calls) summed over the nodes, from INFO commandstats: the
    hold script with its redis.call()s. (Redis 7 also counts those inner calls under their own names, so
    a sum over every command would count them twice.)"""
    usec, calls = 0.0, 0
    for n in nodes:
        row = _cli(n.port, "INFO", "commandstats").get("cmdstat_evalsha")
        if row:
            usec += float(row["usec"])
            calls += int(row["calls"])
    return usec, calls


# ------------------------------------------------------------------------------------------------
# Load (child processes)
# ------------------------------------------------------------------------------------------------

def _client_main(conn: Any, url: str, index: int, accounts: list[str], start_at: float) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    conn.send(asyncio.run(_client(url, index, accounts, start_at)))


async def _client(url: str, index: int, accounts: list[str], start_at: float) -> tuple[int, float, int]:
    from callcontrol import billing
    from callcontrol.call_state import CallState, CallStore
    from ledger import Ledger

    ledger = await Ledger.connect(url)
    store = CallStore.from_url(url)
    ids = itertools.count()
    done = errors = 0
    await asyncio.sleep(max(0.0, start_at - time.time()))       # every client starts together
    stop = time.perf_counter() + DURATION
    cpu0 = time.process_time()

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            n = next(ids)
            call_id = f"b{index}x{n:09d}"
            account = accounts[(n * CLIENTS + index) % len(accounts)]
            now = time.time()
            try:
                await billing.hold(ledger, call_id, account, 60, lease_seconds=1_800,
                                   meta={"facility": "FAC-07", "inmate": "A1", "kind": "call"})
                state = CallState(call_id=call_id, facility_id="FAC-07", station="0701", inmate="A1",
                                  dialled="3125550100", e164="+13125550100", call_class="local",
                                  account=account, hold_amount=60, max_seconds=900, increment=60,
                                  instance="bench", created_at=now, dial_at=now, caller_channel="Local/x")
                await store.create(state, lease_expires_at=now + 1_800, ttl_seconds=1_800)
                done += 1
            except Exception:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    cpu = time.process_time() - cpu0
    await store.close()
    await ledger.close()
    return done, cpu, errors


async def _open_accounts(url: str) -> list[str]:
    from ledger import Ledger

    led = await Ledger.connect(url)
    try:
        accounts = await asyncio.gather(*(led.open_account(f"cb-o{i}", "BENCH", f"+1415{i:07d}")
                                          for i in range(ACCOUNTS)))
        await asyncio.gather(*(led.deposit(f"cb-d{i}", a, 100_000) for i, a in enumerate(accounts)))
        return list(accounts)
    finally:
        await led.close()


def run(masters: int, tmp: Path) -> dict[str, float]:
    nodes = start_cluster(masters, tmp)
    try:
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        accounts = asyncio.run(_open_accounts(url))
        ctx = mp.get_context("spawn")
        start_at = time.time() + 3.0                  # the children's imports and connections first
        pipes, procs = [], []
        for i in range(CLIENTS):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_client_main, args=(child, url, i, accounts, start_at))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        time.sleep(max(0.0, start_at - time.time()))
        pids = [n.proc.pid for n in nodes if n.proc is not None]
        redis0 = {pid: cpu_seconds(pid) for pid in pids}
        usec0, _ = commandstats_usec(nodes)
        t0 = time.perf_counter()
        results = [p.recv() for p in pipes]
        elapsed = time.perf_counter() - t0
        per_node = [cpu_seconds(pid) - redis0[pid] for pid in pids]
        usec1, _ = commandstats_usec(nodes)
        for proc in procs:
            proc.join()
    finally:
        for n in nodes:
            n.stop()
    done = sum(r[0] for r in results)
    return {
        "masters": masters, "auths": done, "errors": sum(r[2] for r in results),
        "rate": done / min(elapsed, DURATION + 0.5) if done else 0.0,
        "redis_us": sum(per_node) * 1e6 / max(done, 1),
        "redis_busiest": max(per_node) / max(elapsed, 1e-9),          # share of one core, busiest node
        "inside_us": (usec1 - usec0) / max(done, 1),
        "client_us": sum(r[1] for r in results) * 1e6 / max(done, 1),
        "node_split": ",".join(f"{c / max(sum(per_node), 1e-9):.0%}" for c in per_node),
    }


def main() -> None:
    print(f"{os.cpu_count()} CPUs; {CLIENTS} client processes x {IN_FLIGHT} in flight, "
          f"{DURATION:.0f} s each; an authorization = ledger hold + call-state create")
    rows = []
    with tempfile.TemporaryDirectory(prefix="apc-cluster-bench-") as tmp:
        for masters in (1, 3):
            rows.append(run(masters, Path(tmp)))
    for r in rows:
        print(f"{r['masters']} master(s): {r['rate']:>8,.0f} authorizations/s ({r['auths']:,.0f}, "
              f"{r['errors']:.0f} errors) | redis-server CPU {r['redis_us']:.1f} us/auth "
              f"(of which the hold script {r['inside_us']:.1f} us inside Redis; busiest node "
              f"{r['redis_busiest']:.0%} of a core; split {r['node_split']}) | client CPU "
              f"{r['client_us']:.1f} us/auth")
    one = rows[0]
    if one["redis_us"]:
        per_core = 1e6 / one["redis_us"]
        print(f"one master core at 100%: ~{per_core:,.0f} authorizations/s; ten masters with a core each: "
              f"~{10 * 1e6 / rows[-1]['redis_us']:,.0f}/s by the 3-master CPU per authorization "
              "(clients on other machines)")


if __name__ == "__main__":
    main()
