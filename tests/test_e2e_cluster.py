"""The whole system on a Redis Cluster with failover: 3 masters with a replica each, PostgreSQL, two real
`callcontrol serve` processes behind one FastAGI address list (the simulator spreads calls over both, as
`hagi://` does), and a separate `ledger sync --forever` process. Under steady load one controller is
killed with SIGKILL mid-call (the survivor settles its calls through the hangup AGI and adoption) and
then one master is failed over to its replica. Afterwards every call is settled once, SQL == Redis, no
balance is negative and the captures equal the call records' charges."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcontrol.call_state import CallStore
from callcontrol.platform.clock import Clock
from callcontrol.platform.config import REPO_ROOT
from callcontrol.sim import Recipient, SimConfig, Simulator
from ledger import Ledger
from tests.e2e_support import handset
from tests.support.servers import PostgresServer, RedisCluster
from tests.test_drain import always_open_facilities, free_port, scrape

LINES = 24                 # numbers called over and over, one call at a time each
SIM_SCALE = 0.1            # the simulated Asterisk runs 10x faster; the controllers are on real time
LOAD_SECONDS = 24.0


@pytest.fixture
def replicated() -> Iterator[RedisCluster]:
    cluster = RedisCluster(masters=3, replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callcontrol.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.xfail(reason="open (#15): the killed controller's calls are adopted by the survivor but stay "
                          "unsettled until their lease; their hangup AGIs are not seen settling them",
                   strict=False)
def test_two_controllers_a_kill_and_a_failover_on_a_cluster(tmp_path: Path, replicated: RedisCluster,
                                                              postgres_server: PostgresServer) -> None:
    url = replicated.cluster_url
    env = {**os.environ, "CALLCONTROL_REDIS_URL": url,
           "CALLCONTROL_DATABASE_URL": postgres_server.create_database("cluster_e2e"),
           "CALLCONTROL_DATA_DIR": str(tmp_path),
           "CALLCONTROL_FACILITY_DIR": str(always_open_facilities(tmp_path)),
           "CALLCONTROL_AMI_USER": "", "CALLCONTROL_LOG_FORMAT": "json", "CALLCONTROL_LOG_LEVEL": "info"}
    ports = [(free_port(), free_port()) for _ in range(2)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, (agi, metrics) in zip("ab", ports, strict=True):
            log = (tmp_path / f"serve-{name}.log").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "callcontrol.cli", "serve", "--no-sync", "--instance", f"ctl-{name}"],
                env={**env, "CALLCONTROL_AGI_BIND": f"127.0.0.1:{agi}",
                     "CALLCONTROL_METRICS_BIND": f"127.0.0.1:{metrics}"},
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT))
        log = (tmp_path / "sync.log").open("w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "callcontrol.cli", "ledger", "sync", "--forever"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT))
        counts = asyncio.run(_drive(url, procs, ports, replicated))
        assert counts["placed"] >= 2 * LINES and counts["killed_mid_call"] > 0, counts
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=60) == 0
        procs[2].send_signal(signal.SIGINT)
        procs[2].wait(timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    sync = _cli(env, "ledger", "sync")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    ledger_check = _cli(env, "ledger", "reconcile")
    assert ledger_check.returncode == 0, ledger_check.stdout + ledger_check.stderr
    calls_check = _cli(env, "calls", "reconcile")
    assert calls_check.returncode == 0, calls_check.stdout + calls_check.stderr


async def _drive(url: str, procs: list[subprocess.Popen[bytes]], ports: list[tuple[int, int]],
                 cluster: RedisCluster) -> dict[str, int]:
    ledger = await Ledger.connect(url)
    store = CallStore.from_url(url)
    numbers = [f"+1312557{i:04d}" for i in range(LINES)]
    accounts = []
    for number in numbers:
        account = await ledger.open_account(f"cl-open-{number[1:]}", "FAC-07", number, owner="test")
        await ledger.deposit(f"cl-dep-{number[1:]}", account, 3000)
        accounts.append(account)
    for _, metrics in ports:                       # both controllers up when /metrics answers
        for _ in range(300):
            try:
                await asyncio.to_thread(scrape, metrics)
                break
            except OSError:
                assert all(p.poll() is None for p in procs), "a process exited early"
                await asyncio.sleep(0.1)
    sim = Simulator([("127.0.0.1", agi) for agi, _ in ports], clock=Clock(SIM_SCALE),
                    config=SimConfig(hangup_agi="hangup"), ami_port=None)
    await sim.start()
    rng = random.Random(15)
    counts = {"placed": 0, "killed_mid_call": 0}
    stop_at = time.monotonic() + LOAD_SECONDS

    async def line(number: str) -> list[object]:
        results: list[object] = []
        while time.monotonic() < stop_at:
            counts["placed"] += 1
            results.append(await sim.place_call(
                "FAC-07", "0701", extension="0701", handset=handset(number[2:]),
                recipient=[Recipient(number, keys="1", talk=rng.uniform(30, 90))]))
        return results

    try:
        tasks = [asyncio.create_task(line(n)) for n in numbers]
        # Steady load, then kill -9 controller A while it has calls up (dialled, held, metered).
        deadline = time.monotonic() + 30
        while True:
            live = [cid for cid, _ in await store.live_calls()]
            states = await asyncio.gather(*(store.get(cid) for cid in live))
            orphaned = [s.call_id for s in states if s is not None and s.instance == "ctl-a"]
            if len(orphaned) >= 3:
                break
            assert time.monotonic() < deadline, "controller A never carried calls"
            await asyncio.sleep(0.2)
        counts["killed_mid_call"] = len(orphaned)
        procs[0].kill()
        procs[0].wait()
        await asyncio.sleep(4)
        # Fail over the master holding the most call partitions' traffic: the first one listed.
        master = next(p for p, role in sorted(cluster.roles().items()) if role == "master")
        await asyncio.to_thread(cluster.failover, master)
        await asyncio.gather(*tasks)
        # Every call over: wait until nothing is left in the live index (adoption of A's calls
        # waits for its heartbeat to expire).
        deadline = time.monotonic() + 45
        while await store.live_calls():
            assert time.monotonic() < deadline, f"unsettled: {await store.live_calls()}"
            await asyncio.sleep(0.5)
        for call_id in orphaned:                       # A's calls, settled by B
            state = await store.get(call_id)
            assert state is not None and state.settled, state
        for account in accounts:
            bal = await ledger.balance(account)
            assert bal.held == 0 and bal.posted >= 0 and bal.available >= 0, bal
            assert bal.posted < 3000                   # every line was charged for something
    finally:
        await sim.stop()
        await store.close()
        await ledger.close()
    return counts
