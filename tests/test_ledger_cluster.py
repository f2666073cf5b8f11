"""The ledger on a real 3-master Redis Cluster: every script touches one slot, partitions spread over the
masters, and the sync worker, reaper and reconcile work there too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hiredis
import pytest
from redis.cluster import RedisCluster as ClusterClient

from ledger import HoldNotPending, InsufficientFunds, LedgerInternal
from ledger.facade import SyncLedger
from ledger.keys import Keys, key_slot, partition_of
from ledger.reconcile import reconcile
from ledger.scripts import SCRIPTS
from ledger.sql import make_engine
from ledger.sync import SyncWorker
from ledger.transport import bulk
from tests.support.servers import RedisCluster


def test_ledger_on_a_cluster(redis_cluster: RedisCluster, tmp_path: Path) -> None:
    client = ClusterClient.from_url(redis_cluster.url, decode_responses=True)
    client.flushall()
    led = SyncLedger(redis_cluster.url, cluster=True)
    calls: list[tuple[str, list[str]]] = []
    real = led.ledger._t.run

    async def spy(script: Any, slot: int, count: int, body: bytes) -> Any:
        reader = hiredis.Reader(encoding="utf-8")           # body: numkeys, keys, args as bulk strings
        reader.feed(b"*%d\r\n%b" % (count, body))
        numkeys, *rest = reader.gets()
        calls.append((script.name, rest[:int(numkeys)]))
        return await real(script, slot, count, body)

    led.ledger._t.run = spy  # type: ignore[method-assign]
    accounts = []
    for i in range(24):
        a = led.open_account(f"o{i}", "FAC-C", f"+1312557{i:04d}", "owner")
        led.deposit(f"d{i}", a, 5_000)
        led.hold(f"h{i}", a, "call", 2_000, lease_seconds=600, meta={"n": str(i)})
        led.capture(f"c{i}", a, "call", 300)
        if i % 2:
            led.settle(f"s{i}", a, "call", 900)
        else:
            led.void(f"v{i}", a, "call", reason="no answer")
        led.hold(f"hs{i}", a, "stuck", 100, lease_seconds=5)
        accounts.append(a)
    a = accounts[0]
    assert led.deposit("d0", a, 5_000).posted == 5_000            # replay: the first result
    with pytest.raises(HoldNotPending):
        led.settle("late", a, "call", 1)
    with pytest.raises(InsufficientFunds):
        led.refund("r-big", a, 1_000_000 // 100)
    led.refund("r0", a, 100, reason="partial")
    led.adjust("a0", a, -50, reason="fee reversal")
    led.freeze("f0", a)
    led.unfreeze("u0", a)
    led.record_call("rc1", {"call_id": "call-c1", "facility_id": "FAC-C", "inmate_id": "I-1", "account_id": a,
                            "dialled": "3125570000", "number_e164": "+13125570000", "call_class": "prepaid",
                            "outcome": "completed", "reason": "", "started_at": "2024-05-01T10:00:00Z",
                            "answered_at": "", "accepted_at": "", "ended_at": "", "billed_seconds": 60,
                            "amount": 12, "recorded": True, "privileged": False})
    led.set_block("b1", "FAC-C", "+13125570001", True, source="recipient")
    assert led.is_blocked("FAC-C", "+13125570001")
    reaped = led.reap_expired(time.time() + 10)
    assert len(reaped) == 24 and {h.status for h in reaped} == {"expired"}
    assert led.balance(accounts[1]).held == 0
    # Every script call named keys of exactly one slot, and the accounts sit on more than one master.
    assert {name for name, _ in calls} >= {"open", "deposit", "hold", "capture", "settle", "void", "refund",
                                            "adjust", "freeze", "unfreeze", "call", "block", "expire"}
    for name, keys in calls:
        assert len({key_slot(k) for k in keys}) == 1, (name, keys)
    masters = {client.get_node_from_key(Keys(partition_of(x, 16)).journal).name for x in accounts}
    assert len(masters) >= 2
    # Negative control: keys in two slots are refused by the cluster.
    k1, k2 = Keys(0).journal, Keys(1).journal
    assert key_slot(k1) != key_slot(k2)
    with pytest.raises(LedgerInternal, match="CROSSSLOT"):
        led.run(real(SCRIPTS["void"], key_slot(k1), 8, bulk("2", k1, k2, "s", "60", "x", "0" * 32, "0")))
    led.close()
    # The journal syncs from the cluster, and SQL agrees with it.
    sql_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    entries = sum(client.xlen(Keys(p).journal) for p in range(16))
    assert entries == len(calls) - 3                  # all but the two refusals and the replay
    worker = SyncWorker(redis_cluster.url, sql_url, claim_idle_ms=0)
    assert worker.drain() == entries
    engine = make_engine(sql_url)
    assert reconcile(worker.redis, engine, 16) == []
    worker.close()
    engine.dispose()
    client.close()
