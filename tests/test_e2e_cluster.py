"""The whole system on a Redis Cluster with failover: 3 masters with a replica each, PostgreSQL, two real
`callcontrol serve` processes behind one FastAGI address list (the simulator spreads calls over both, as
`hagi://` does), and a separate `ledger sync --forever` process. Under steady load one controller is
killed with SIGKILL mid-call (the survivor settles its calls through the hangup AGI and adoption) and
then one master is failed over to its replica. Afterwards every call is settled once, SQL == Redis, no
balance is negative and the captures equal the call records' charges.

Some of A's calls are killed between their hold and Dial (recording the name, the notices): the channel
then learns its CALL_ID before anything that takes time, so its hangup handler's AGI reaches B (the
next address, A refusing) and B settles it. It used to be set just before Dial, and such a call kept
its hold until the lease ran out (without AMI nothing else knows the channel is gone)."""

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
from sqlalchemy import select

from callcontrol.call_state import CALL_KEY_PATTERN, CallStore
from callcontrol.platform.clock import Clock
from callcontrol.platform.config import REPO_ROOT
from callcontrol.sim import Recipient, SimConfig, Simulator
from ledger import Ledger
from ledger.sql import accounts as sql_accounts
from ledger.sql import call_records, holds, make_engine, transfers
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
def test_two_controllers_a_kill_and_a_failover_on_a_cluster(tmp_path: Path, replicated: RedisCluster,
                                                              postgres_server: PostgresServer) -> None:
    url = replicated.cluster_url
    sql_url = postgres_server.create_database("cluster_e2e")
    env = {**os.environ, "CALLCONTROL_REDIS_URL": url,
           "CALLCONTROL_DATABASE_URL": sql_url,
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
        counts, orphaned, call_ids = asyncio.run(_drive(url, procs, ports, replicated))
        assert counts["placed"] >= 2 * LINES and counts["killed_setting_up"] > 0, counts
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
    _assert_sql_end_state(sql_url, call_ids, orphaned)


def _assert_sql_end_state(sql_url: str, call_ids: set[str], orphaned: list[str]) -> None:
    """In SQL: one record and one resolved hold per call, each settled (or voided) once, the record's
    charge equal to the hold's captures, no balance negative and nothing held."""
    engine = make_engine(sql_url)
    try:
        with engine.connect() as conn:
            records = {r.call_id: r for r in conn.execute(select(call_records))}
            hold_rows = {r.hold_id: r for r in conn.execute(select(holds))}
            moves = list(conn.execute(select(transfers)))
            balances = list(conn.execute(select(sql_accounts)))
    finally:
        engine.dispose()
    assert set(records) == call_ids and set(hold_rows) == call_ids, (
        call_ids ^ set(records), call_ids ^ set(hold_rows))
    assert set(orphaned) <= call_ids
    assert {h.status for h in hold_rows.values()} <= {"settled", "voided"}, \
        [(h.hold_id, h.status) for h in hold_rows.values() if h.status not in ("settled", "voided")]
    charged: dict[str, int] = {}
    settles: dict[str, int] = {}
    for m in moves:
        if m.kind in ("capture", "settle"):
            charged[m.hold_id] = charged.get(m.hold_id, 0) - m.amount
        if m.kind == "settle":
            settles[m.hold_id] = settles.get(m.hold_id, 0) + 1
    assert all(n == 1 for n in settles.values()), settles            # settled once each
    for call_id, rec in records.items():
        assert charged.get(call_id, 0) == rec.amount == hold_rows[call_id].captured, (call_id, rec)
        assert rec.outcome, rec
    assert all(b.posted >= 0 and b.held == 0 for b in balances), balances


async def _drive(url: str, procs: list[subprocess.Popen[bytes]], ports: list[tuple[int, int]],
                 cluster: RedisCluster) -> tuple[dict[str, int], list[str], set[str]]:
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
    counts = {"placed": 0, "killed_mid_call": 0, "killed_setting_up": 0}
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
        # Steady load, then kill -9 controller A while it has calls up: at least one accepted and
        # metered, at least one held and not yet answered (setting up: its name, the notices, ringing).
        deadline = time.monotonic() + 30
        while True:
            live = [cid for cid, _ in await store.live_calls()]
            states = [s for s in await asyncio.gather(*(store.get(cid) for cid in live))
                      if s is not None and s.instance == "ctl-a"]
            orphaned = [s.call_id for s in states]
            if len(orphaned) >= 3 and any(s.accepted_at for s in states) and \
                    any(not s.answered_at for s in states):
                break
            assert time.monotonic() < deadline, "controller A never carried calls"
            await asyncio.sleep(0.2)
        counts["killed_mid_call"] = len(orphaned)
        counts["killed_setting_up"] = sum(1 for s in states if not s.answered_at)
        procs[0].kill()
        procs[0].wait()
        await asyncio.sleep(4)
        # Fail over the master holding the most call partitions' traffic: the first one listed.
        master = next(p for p, role in sorted(cluster.roles().items()) if role == "master")
        await asyncio.to_thread(cluster.failover, master)
        await asyncio.gather(*tasks)
        # Every call over: wait until nothing is left in the live index. A's calls are settled by B
        # through their hangup AGIs as their channels go down, long before their leases.
        deadline = time.monotonic() + 30
        while await store.live_calls():
            assert time.monotonic() < deadline, f"unsettled: {await store.live_calls()}"
            await asyncio.sleep(0.5)
        for call_id in orphaned:                       # A's calls, settled by B
            state = await store.get(call_id)
            assert state is not None and state.settled and state.ended_at, state
        # Redis: every call's state settled (the SQL side is checked after the last sync).
        keys = [k async for k in store.r.scan_iter(match=CALL_KEY_PATTERN, count=1000)]
        call_ids = {(k.decode() if isinstance(k, bytes) else k).partition(":call:")[2] for k in keys}
        final = await asyncio.gather(*(store.get(cid) for cid in call_ids))
        assert all(s is not None and s.settled for s in final), [s for s in final if not s or not s.settled]
        for account in accounts:
            bal = await ledger.balance(account)
            assert bal.held == 0 and bal.posted >= 0 and bal.available >= 0, bal
            assert bal.posted < 3000                   # every line was charged for something
    finally:
        await sim.stop()
        await store.close()
        await ledger.close()
    return counts, orphaned, call_ids
