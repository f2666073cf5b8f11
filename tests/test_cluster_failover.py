"""Call state and the ledger on a 3-master Redis Cluster with a replica each, named by a
`redis+cluster://` URL: a call lives on one slot, and a master failover (manual, or kill -9 of the
master) fails that slot's requests closed until the replica is promoted, then they work again without
a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from callcontrol.call_state import CallState, CallStore, call_key, live_key_of, unsettled_ended
from ledger import Ledger, LedgerUnavailable
from ledger.keys import key_slot
from ledger.redisclient import cluster_seeds, connect_sync
from tests.support.servers import RedisCluster


@pytest.fixture(scope="module")
def replicated() -> Iterator[RedisCluster]:
    cluster = RedisCluster(masters=3, replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _owner(cluster: RedisCluster, key: str) -> int:
    """The port of the master serving the key's slot, as the cluster says."""
    out = redis.Redis(port=next(p for p, r in cluster.roles().items() if r == "master"))
    try:
        for start, end, master, *_ in out.execute_command("CLUSTER", "SLOTS"):
            if start <= key_slot(key) <= end:
                return int(master[1])
    finally:
        out.close()
    raise LookupError(key)


def test_cluster_url_names_seeds() -> None:
    assert cluster_seeds("redis+cluster://a:1,b:2/") == [("a", 1), ("b", 2)]
    assert cluster_seeds("redis+cluster://u:pw@h:7000") == [("h", 7000)]
    assert cluster_seeds("redis://h:7000/0") is None
    with pytest.raises(ValueError):
        cluster_seeds("redis+cluster://h:7000/3")


def test_call_keys_share_one_slot() -> None:
    for n in range(200):
        cid = f"c{n:05d}"
        assert key_slot(call_key(cid)) == key_slot(live_key_of(cid))


def test_call_state_survives_failovers(replicated: RedisCluster) -> None:
    url = replicated.cluster_url

    async def scenario() -> None:
        store = CallStore.from_url(url, timeout=2.0)
        ledger = await Ledger.connect(url, timeout=2.0)
        try:
            acct = await ledger.open_account("o1", "F", "+12025550100")
            await ledger.deposit("d1", acct, 5000)
            ids = [f"call{n}" for n in range(40)]
            for cid in ids:
                await store.create(CallState(call_id=cid, account=acct, instance="i1"), time.time() + 60, 60)
            assert {c for c, _ in await store.live_calls()} == set(ids)
            await store.heartbeat("i1", 30)
            assert await store.alive("i1")
            info = await store.server_info()
            assert info["run_id"].count(",") == 2 and info["uptime_in_seconds"] >= 0

            # Manual failover of the master serving call0: MOVED, then the promoted replica answers.
            victim = "call0"
            old = _owner(replicated, call_key(victim))
            promoted = replicated.failover(old)
            assert replicated.roles()[promoted] == "master" and replicated.roles()[old] == "slave"
            assert (await store.finish(victim, time.time(), "hangup")) is not None
            await ledger.hold("h1", acct, victim, 300, lease_seconds=60)

            # kill -9 of the master serving call1: its slot fails closed until promotion, others go on.
            other = next(c for c in ids if _owner(replicated, call_key(c)) != _owner(replicated,
                                                                                      call_key("call1")))
            dead = _owner(replicated, call_key("call1"))
            replica = replicated.replica_of(dead)
            import os
            import signal
            node = next(n for n in replicated.nodes if n.port == dead)
            assert node.proc is not None
            os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait()
            with pytest.raises(LedgerUnavailable):
                await store.get("call1")
            assert (await store.get(other)) is not None
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert (await store.finish("call1", time.time(), "hangup")) is not None
                    break
                except LedgerUnavailable:
                    assert time.monotonic() < deadline, "slot never answered again"
                    await asyncio.sleep(0.2)
            assert replicated.roles().get(replica) == "master"
            await store.mark_settled("call1", 0, "ok")
            assert "call1" not in {c for c, _ in await store.live_calls()}
            await store.ping()
        finally:
            await store.close()
            await ledger.close()

    asyncio.run(scenario())
    r = connect_sync(url)
    found = unsettled_ended(r, 16, time.time())
    assert any("call0" in f for f in found) and not any("call1:" in f for f in found)
