"""Journal -> SQL sync, reaper, reconcile, rebuild and the `callcontrol ledger` commands, on SQLite and
PostgreSQL (the `sql_url` fixture) against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from callcontrol.cli import build_parser
from callcontrol.platform.config import Settings
from ledger import HoldNotPending, IdConflict, Ledger
from ledger.apply import apply_entries
from ledger.core import DEFAULT_IDEMPOTENCY_TTL
from ledger.facade import SyncLedger
from ledger.journal import decode, sortable_id
from ledger.keys import Keys, account_id_for, partition_of
from ledger.reconcile import rebuild, reconcile, redis_accounts, redis_holds
from ledger.redisclient import connect_sync
from ledger.sql import MIGRATIONS, make_engine, migrate
from ledger.sync import GROUP, SyncWorker

FAC = "FAC-07"


@pytest.fixture
def led(redis_url: str) -> Iterator[SyncLedger]:
    with SyncLedger(redis_url) as ledger:
        yield ledger


@pytest.fixture
def worker(redis_url: str, sql_url: str) -> Iterator[SyncWorker]:
    w = SyncWorker(redis_url, sql_url, claim_idle_ms=0)
    yield w
    w.close()


def rows(sql_url: str, query: str) -> list[tuple[object, ...]]:
    engine = make_engine(sql_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def execute(sql_url: str, statement: str) -> None:
    engine = make_engine(sql_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def call_record(call_id: str, outcome: str, seconds: int, amount: int) -> dict[str, object]:
    return {"call_id": call_id, "facility_id": FAC, "inmate_id": "I-42", "account_id": "",
            "dialled": "3125550100", "number_e164": "+13125550100", "call_class": "prepaid",
            "outcome": outcome, "reason": "",
            "started_at": "2024-05-01T10:00:00+00:00", "answered_at": "", "accepted_at": "", "ended_at": "",
            "billed_seconds": seconds, "amount": amount, "recorded": True, "privileged": False}


def busy_ledger(led: SyncLedger, n_accounts: int = 6) -> list[str]:
    """A few accounts with deposits, settled, voided and still-open holds."""
    accounts = []
    for i in range(n_accounts):
        a = led.open_account(f"o{i}", FAC, f"+1312555{i:04d}", f"owner {i}")
        led.deposit(f"d{i}", a, 5_000 + i, source="web", reference=f"pay-{i}")
        led.hold(f"h{i}", a, "call-a", 1_000, lease_seconds=600, meta={"i": str(i)})
        led.capture(f"c{i}", a, "call-a", 300)
        led.settle(f"s{i}", a, "call-a", 450)
        led.hold(f"h{i}b", a, "call-b", 700, lease_seconds=600)
        if i % 2:
            led.void(f"v{i}", a, "call-b")
        if i % 3 == 0:
            led.adjust(f"a{i}", a, -25, reason="rounding correction")
        accounts.append(a)
    return accounts


def test_sync_writes_accounts_transfers_holds_calls_blocks(led: SyncLedger, worker: SyncWorker,
                                                          sql_url: str, redis_url: str) -> None:
    accounts = busy_ledger(led)
    led.record_call("rc1", call_record("call-1", "ringing", 0, 0))
    led.record_call("rc2", call_record("call-1", "completed", 95, 18))   # a later record updates the row
    led.set_block("b1", FAC, "+13125550100", True, source="recipient")
    applied = worker.drain()
    assert applied == len(accounts) * 6 + 3 + 2 + 2 + 1                # every journal entry once
    assert worker.run_once() == 0
    a0 = accounts[0]
    assert rows(sql_url, "select kind, amount, posted_after, note from ledger_transfers"
                f" where account_id='{a0}' order by ver") == [
        ("deposit", 5000, 5000, "web"), ("capture", -300, 4700, ""), ("settle", -150, 4550, ""),
        ("adjust", -25, 4525, "rounding correction")]
    assert rows(sql_url, "select hold_id, amount, captured, status, meta from ledger_holds"
                f" where account_id='{a0}' order by hold_id") == [
        ("call-a", 1000, 450, "settled", '{"i":"0"}'), ("call-b", 700, 0, "pending", "{}")]
    assert rows(sql_url, "select outcome, billed_seconds, amount, started_at from call_records") == [
        ("completed", 95, 18, "2024-05-01T10:00:00Z")]
    assert rows(sql_url, "select blocked, source from number_blocks") == [(True, "recipient")]
    r = connect_sync(redis_url)
    assert reconcile(r, make_engine(sql_url), 16) == []
    # Entries are trimmed from Redis once SQL holds them.
    assert sum(r.xlen(Keys(p).journal) for p in range(16)) == 0
    r.close()


def test_redelivered_entries_change_nothing(led: SyncLedger, redis_url: str, sql_url: str) -> None:
    busy_ledger(led, 3)
    w = SyncWorker(redis_url, sql_url, trim=False)
    n = w.drain()
    before = rows(sql_url, "select * from ledger_transfers order by account_id, op_id") + \
        rows(sql_url, "select * from ledger_accounts order by account_id")
    r = redis.Redis.from_url(redis_url)
    for p in range(16):                                               # deliver everything again
        r.xgroup_setid(Keys(p).journal, GROUP, "0")
    assert w.drain() == n
    after = rows(sql_url, "select * from ledger_transfers order by account_id, op_id") + \
        rows(sql_url, "select * from ledger_accounts order by account_id")
    assert after == before
    assert rows(sql_url, "select count(*) from ledger_journal") == [(n,)]
    w.close()


def test_inmate_blocks_sync_beside_facility_blocks(led: SyncLedger, redis_url: str, sql_url: str) -> None:
    """An inmate's block is its own row (inmate_blocks); the newest entry per inmate wins, in any order,
    and delivering the entries again changes nothing."""
    num = "+13125550100"
    migrate(sql_url)
    led.set_block("f1", FAC, num, True, source="recipient")
    led.set_block("i1", FAC, num, True, source="holder-h1", inmate_id="1001")
    led.set_block("i2", FAC, num, True, source="holder-h1", inmate_id="1002")
    led.set_block("i3", FAC, num, False, source="holder-h1", inmate_id="1002")
    led.set_block("i1", FAC, num, True, source="holder-h1", inmate_id="1001")     # a replay adds nothing
    entries = journal_entries(redis_url)
    assert len(entries) == 4
    apply_in_sql(sql_url, entries[::-1])                              # newest first: still converges
    apply_in_sql(sql_url, entries)                                    # redelivered
    assert rows(sql_url, "select facility_id, number_e164, blocked, source from number_blocks") == [
        (FAC, num, True, "recipient")]
    assert rows(sql_url, "select inmate_id, blocked, source from inmate_blocks order by inmate_id") == [
        ("1001", True, "holder-h1"), ("1002", False, "holder-h1")]
    assert rows(sql_url, "select count(*) from ledger_journal") == [(4,)]


def journal_entries(redis_url: str) -> list[tuple[int, str, str]]:
    """Every journal entry as the worker reads it: (partition, stream id, entry)."""
    r = connect_sync(redis_url)
    try:
        return [(p, sid, fields["e"]) for p in range(16) for sid, fields in r.xrange(Keys(p).journal)]
    finally:
        r.close()


def apply_in_sql(sql_url: str, entries: list[tuple[int, str, str]]) -> None:
    engine = make_engine(sql_url)
    try:
        with engine.begin() as conn:
            apply_entries(conn, entries)
    finally:
        engine.dispose()


def test_partly_applied_and_out_of_order_batches_converge(led: SyncLedger, redis_url: str,
                                                          sql_url: str) -> None:
    """Batches holding rows SQL already has (PostgreSQL's COPY path meets the key and falls back to
    upserts), and a hold whose capture and settle were written before the entry that placed it."""
    migrate(sql_url)
    a = led.open_account("o1", FAC, "+13125550101", r"Pat \N O'Brien")
    led.deposit("d1", a, 5_000, source="web\\", reference=r"C:\New\ref")
    led.hold("h1", a, "call-a", 1_000, lease_seconds=600, meta={"path": r"a\b"})
    led.capture("c1", a, "call-a", 300)
    led.settle("s1", a, "call-a", 400)
    b = led.open_account("o2", FAC, "+13125550102")
    led.deposit("d2", b, 700)
    entries = journal_entries(redis_url)
    placed = next(e for e in entries if decode(*e).op_id == "h1")
    settled = next(e for e in entries if decode(*e).op_id == "s1")
    late = [placed, *(e for e in entries if e[2].split("\x1f")[1] == b)]
    early = [e for e in entries if e not in late]

    apply_in_sql(sql_url, early)                 # the hold's capture and settle, not its placing
    assert rows(sql_url, "select status, captured, meta, created_ts from ledger_holds") == [
        ("settled", 400, "", decode(*settled).ts)]
    apply_in_sql(sql_url, late)                  # new journal rows, but the hold row is there already
    apply_in_sql(sql_url, entries)               # all of it again
    apply_in_sql(sql_url, [placed])
    assert rows(sql_url, "select status, captured, meta, created_ts from ledger_holds") == [
        ("settled", 400, '{"path":"a\\\\b"}', decode(*placed).ts)]
    assert rows(sql_url, f"select owner, posted, held from ledger_accounts where account_id = '{a}'") == [
        (r"Pat \N O'Brien", 4_600, 0)]
    assert rows(sql_url, f"select kind, amount, hold_id, note, reference from ledger_transfers "
                         f"order by account_id = '{a}' desc, ver") == [
        ("deposit", 5_000, None, "web\\", r"C:\New\ref"), ("capture", -300, "call-a", "", ""),
        ("settle", -100, "call-a", "", ""), ("deposit", 700, None, "", "")]
    assert sorted(rows(sql_url, "select partition, stream_id, entry from ledger_journal")) == sorted(entries)
    r = connect_sync(redis_url)
    assert reconcile(r, make_engine(sql_url), 16) == []
    r.close()


def test_migrations_down_and_up(sql_url: str) -> None:
    """0002 gives PostgreSQL bytewise identifier keys and room for in-place account updates, and undoes
    them; SQLite has nothing of the sort and goes through both ways unchanged. 0003 adds inmate_blocks."""
    from alembic import command
    from alembic.config import Config

    postgres = sql_url.startswith("postgresql")
    keys = ("('ledger_journal', 'stream_id'), ('ledger_transfers', 'op_id'), ('ledger_holds', 'hold_id')")

    def storage() -> list[tuple[object, ...]]:
        found = rows(sql_url, "select version_num from ledger_alembic_version")
        if postgres:
            found += rows(sql_url, "select table_name, collation_name from information_schema.columns "
                                   f"where (table_name, column_name) in ({keys}) order by table_name")
            found += rows(sql_url, "select reloptions from pg_class where relname = 'ledger_accounts'")
        return found

    migrate(sql_url)
    head = storage()
    assert head == ([("0003",), ("ledger_holds", "C"), ("ledger_journal", "C"), ("ledger_transfers", "C"),
                     (["fillfactor=50"],)] if postgres else [("0003",)])
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sql_url)
    command.downgrade(cfg, "0001")
    assert storage() == ([("0001",), ("ledger_holds", None), ("ledger_journal", None),
                          ("ledger_transfers", None), (None,)] if postgres else [("0001",)])
    migrate(sql_url)
    assert storage() == head


def test_database_outage_acknowledges_nothing(led: SyncLedger, redis_url: str, sql_url: str,
                                              tmp_path: object) -> None:
    migrate(sql_url)
    busy_ledger(led, 2)
    dead = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    w = SyncWorker(redis_url, dead, run_migrations=False)
    with pytest.raises(sa.exc.OperationalError):
        w.run_once()
    r = connect_sync(redis_url)
    pending = sum(r.xpending(Keys(p).journal, GROUP)["pending"] for p in range(16))
    assert pending > 0                                                # read, not acknowledged
    w.engine.dispose()
    w.engine = make_engine(sql_url)                                   # the database is back
    applied = w.run_once()
    assert applied == pending
    assert sum(r.xpending(Keys(p).journal, GROUP)["pending"] for p in range(16)) == 0
    assert reconcile(r, w.engine, 16) == []
    r.close()
    w.close()


def journal_size(r: redis.Redis) -> int:
    return sum(r.xlen(Keys(p).journal) for p in range(16))


def pending_per_partition(r: redis.Redis) -> list[int]:
    return [r.xpending(Keys(p).journal, GROUP)["pending"] for p in range(16)]


def test_outage_while_reading_ahead_repeats_and_loses_nothing(led: SyncLedger, redis_url: str,
                                                               sql_url: str) -> None:
    """The next batch is read while one is written. A database outage then leaves more than a batch of
    our own entries pending in a partition; all of them come back at once (no waiting for XAUTOCLAIM)
    and every entry is applied and counted once."""
    migrate(sql_url)
    busy_ledger(led, 8)
    r = connect_sync(redis_url)
    total = journal_size(r)
    w = SyncWorker(redis_url, sql_url, batch=2, claim_idle_ms=600_000, run_migrations=False)
    first = w.run_once()
    assert 0 < first < total
    working = w.engine
    w.engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(sa.exc.OperationalError):
        w.run_once()
    assert max(pending_per_partition(r)) > 2                         # the failed batch and the next one
    w.engine.dispose()
    w.engine = working
    assert first + w.drain() == total
    assert pending_per_partition(r) == [0] * 16
    assert rows(sql_url, "select count(*) from ledger_journal") == [(total,)]
    assert reconcile(r, w.engine, 16) == []
    w.close()
    r.close()


def test_dead_consumers_entries_are_reclaimed_once_while_reading_ahead(led: SyncLedger, redis_url: str,
                                                                       sql_url: str) -> None:
    """A consumer that read entries and died: XAUTOCLAIM hands them over. Reclaiming at once (idle 0)
    also hands back the batch being written while the next is read ahead; it is not taken twice."""
    busy_ledger(led, 8)
    r = connect_sync(redis_url)
    total = journal_size(r)
    for p in range(16):
        r.xgroup_create(Keys(p).journal, GROUP, id="0", mkstream=True)
        r.xreadgroup(GROUP, "dead", {Keys(p).journal: ">"}, count=3)
    assert sum(pending_per_partition(r)) > 0
    w = SyncWorker(redis_url, sql_url, batch=2, claim_idle_ms=0, trim=False)
    assert w.drain() == total
    assert pending_per_partition(r) == [0] * 16
    assert rows(sql_url, "select count(*) from ledger_journal") == [(total,)]
    assert reconcile(r, w.engine, 16) == []
    w.close()
    r.close()


def test_reaper_voids_expired_holds_and_flags_them(led: SyncLedger, worker: SyncWorker, sql_url: str,
                                                   redis_url: str) -> None:
    a = led.open_account("o1", FAC, "+13125550111")
    led.deposit("d1", a, 2_000)
    led.hold("h1", a, "stuck", 1_200, lease_seconds=30)
    led.capture("c1", a, "stuck", 200)
    led.hold("h2", a, "fresh", 300, lease_seconds=3_600)
    assert led.reap_expired(time.time()) == []
    reaped = led.reap_expired(time.time() + 60)
    assert [(h.hold_id, h.status, h.captured) for h in reaped] == [("stuck", "expired", 200)]
    b = led.balance(a)
    assert (b.posted, b.held, b.available) == (1_800, 300, 1_500)    # nothing stays locked
    assert led.reap_expired(time.time() + 60) == []                  # resolved once
    with pytest.raises(HoldNotPending):
        led.settle("s1", a, "stuck", 200)
    worker.drain()
    assert rows(sql_url, "select hold_id, status, review from ledger_holds order by hold_id") == [
        ("fresh", "pending", False), ("stuck", "expired", True)]
    [(part, sid, raw)] = rows(sql_url, "select partition, stream_id, entry from ledger_journal"
                                       " where op='expire'")
    entry = decode(part, sid, raw)                                    # type: ignore[arg-type]
    assert (entry.op_id, entry.hold_id, entry.text1) == ("!expire:stuck", "stuck", "lease expired")
    assert [h.hold_id for h in led.reap_expired(time.time() + 7_200)] == ["fresh"]
    assert led.balance(a).held == 0


def test_reaper_ends_when_listed_holds_are_not_yet_due(led: SyncLedger,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A full batch of holds the queue query lists but the script does not expire must not make
    reap_expired fetch the same batch for ever. With REAP_BATCH = 1, one hold is a full batch."""
    monkeypatch.setattr("ledger.core.REAP_BATCH", 1)
    a = led.open_account("o1", FAC, "+13125550111")
    led.deposit("d1", a, 2_000)
    led.hold("h1", a, "gap", 100, lease_seconds=60)
    expires = led.hold_info(a, "gap").expires_at                     # type: ignore[union-attr]

    def reap(now: float) -> list[str]:
        return [h.hold_id for h in led.run(asyncio.wait_for(led.ledger.reap_expired(now), 3))]

    # 0.4 ms before the lease end: "%.3f" rounds up to it, whole ms do not. Not due, and no loop.
    assert reap(expires - 0.0004) == []
    assert led.hold_info(a, "gap").status == "pending"               # type: ignore[union-attr]
    assert reap(expires) == ["gap"]                                  # due at its lease end
    # Belt and braces: a round that removes nothing ends the loop, whatever the reason.
    led.hold("h2", a, "kept", 100, lease_seconds=60)

    async def keep(*_: object) -> None:
        return None

    monkeypatch.setattr(Ledger, "_expire", keep)
    assert reap(time.time() + 120) == []


def _settings(redis_url: str, sql_url: str) -> Settings:
    return replace(Settings(), redis_url=redis_url, database_url=sql_url)


def cli(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["ledger", *argv])
    return args.func(args, settings)


def test_reconcile_detects_drift(led: SyncLedger, redis_url: str, sql_url: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    accounts = busy_ledger(led, 3)
    settings = _settings(redis_url, sql_url)
    assert cli(settings, "reconcile") == 0
    assert "agree" in capsys.readouterr().out
    execute(sql_url, f"update ledger_accounts set posted = posted + 1 where account_id = '{accounts[1]}'")
    assert cli(settings, "reconcile") == 1
    out = capsys.readouterr().out
    assert f"DRIFT account {accounts[1]}: posted" in out
    execute(sql_url, f"update ledger_accounts set posted = posted - 1 where account_id = '{accounts[1]}'")
    r = redis.Redis.from_url(redis_url)
    r.hset(_account_key(accounts[2]), "s", "frozen")
    execute(sql_url, f"update ledger_holds set captured = 5 where account_id = '{accounts[0]}' "
                     "and hold_id = 'call-b'")
    assert cli(settings, "reconcile", "--no-sync") == 1
    out = capsys.readouterr().out
    assert f"account {accounts[2]}: state redis=frozen sql=active" in out
    assert f"hold {accounts[0]}/call-b: captured redis=0 sql=5" in out


def _account_key(account_id: str) -> str:
    from ledger.keys import partition_of
    return Keys(partition_of(account_id, 16)).account(account_id)


def test_rebuild_restores_balances_open_holds_and_replays(led: SyncLedger, redis_url: str, sql_url: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    accounts = busy_ledger(led, 4)
    led.set_block("b1", FAC, "+13125550100", True, source="recipient")
    led.set_block("b2", FAC, "+13125550000", True, source="holder-h1", inmate_id="1001")
    first_settle = led.settle("s-open", accounts[0], "call-b", 100)
    settings = _settings(redis_url, sql_url)
    assert cli(settings, "sync") == 0
    r = connect_sync(redis_url)
    balances = redis_accounts(r, 16)
    open_holds = redis_holds(r, 16)
    assert open_holds
    r.flushall()                                                      # Redis is lost
    assert led.find_account(FAC, "+13125550000") is None
    assert cli(settings, "rebuild") == 0
    assert redis_accounts(r, 16) == balances
    assert redis_holds(r, 16) == open_holds
    assert led.is_blocked(FAC, "+13125550100")
    assert led.is_blocked(FAC, "+13125550000", "1001") and not led.is_blocked(FAC, "+13125550000", "1002")
    assert led.blocked_inmates(FAC, "+13125550000") == {"1001": "holder-h1"}
    # Idempotency records synced before the loss come back: a retry returns the first result.
    assert led.settle("s-open", accounts[0], "call-b", 100) == first_settle
    with pytest.raises(HoldNotPending):
        led.void("v-late", accounts[0], "call-b")
    assert cli(settings, "rebuild") == 1                              # refuses to overwrite live data
    capsys.readouterr()
    # The ledger carries on from there and stays in step with SQL.
    led.settle("s-after", accounts[2], "call-b", 700)
    led.deposit("d-after", accounts[3], 100)
    assert cli(settings, "reconcile") == 0
    r.close()


def test_history_follows_the_journal_not_the_clocks(led: SyncLedger, redis_url: str, sql_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Stream ids compare as numbers ("…-9" before "…-10"); the writers' ts may run backwards."""
    a = led.open_account("o1", FAC, "+13125550150")
    for i in range(3):
        led.deposit(f"d{i}", a, 100 + i)
    settings = _settings(redis_url, sql_url)
    assert cli(settings, "sync") == 0
    found = rows(sql_url, f"select partition, stream_id from ledger_journal where scope = '{a}'")
    found.sort(key=lambda r: sortable_id(str(r[1])))                  # journal order: o1, d0, d1, d2
    for (part, sid), seq, ts in zip(found, (8, 9, 10, 11), (4_000, 3_000, 2_000, 1_000), strict=True):
        execute(sql_url, f"update ledger_journal set stream_id = '1700000000000-{seq}', ts = {ts} "
                         f"where partition = {part} and stream_id = '{sid}'")
    capsys.readouterr()

    def history(*extra: str) -> list[str]:
        assert cli(settings, "history", a, "--no-sync", *extra) == 0
        last = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if line.strip()]
        return [op_id for op_id in last if op_id in ("o1", "d0", "d1", "d2")]

    assert history() == ["o1", "d0", "d1", "d2"]
    assert history("--limit", "2") == ["d1", "d2"]                    # the last ones


def test_cli_money_and_errors(redis_url: str, sql_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    s = _settings(redis_url, sql_url)
    assert cli(s, "migrate") == 0
    assert cli(s, "open", FAC, "+13125550123", "--owner", "Pat Doe") == 0
    acct = f"{FAC}:+13125550123"
    assert cli(s, "deposit", acct, "25.00", "--reference", "pay-1") == 0
    assert cli(s, "deposit", acct, "$0.05", "--op-id", "dep-2") == 0
    assert cli(s, "deposit", acct, "$0.05", "--op-id", "dep-2") == 0  # retry: no second deposit
    capsys.readouterr()
    for bad in ("25.001", "0", "-3", "abc", "1e3"):
        assert cli(s, "deposit", acct, bad) == 2, bad
    assert "bad_amount" in capsys.readouterr().err
    assert cli(s, "refund", acct, "100") == 1
    assert "insufficient_funds" in capsys.readouterr().err
    assert cli(s, "adjust", acct, "-1.50", "--reason", "fee reversal") == 0
    assert cli(s, "balance", acct) == 0
    out = capsys.readouterr().out
    assert "$23.55" in out and "active" in out
    assert cli(s, "statement", acct) == 0
    out = capsys.readouterr().out
    assert "deposit  $25.00" in out and "-$1.50" in out and "fee reversal" in out
    assert cli(s, "history", acct) == 0
    assert "open" in capsys.readouterr().out
    assert cli(s, "close", acct) == 1
    assert cli(s, "refund", acct, "23.55", "--reason", "released") == 0
    assert cli(s, "close", acct) == 0
    assert cli(s, "balance", "ap_ffffffffffffffffffff") == 1
    assert cli(s, "hold", "list") == 0
    assert cli(s, "reap") == 0
    assert cli(s, "block", FAC, "+13125550123", "--source", "facility") == 0
    assert "blocked" in capsys.readouterr().out


def _differs(names: Iterator[str], old: int, new: int) -> str:
    """The first name whose partition differs between `old` and `new` partition counts."""
    return next(n for n in names if partition_of(n, old) != partition_of(n, new))


@pytest.mark.parametrize(("old", "new"), [(4, 16), (16, 4)])
def test_rebuild_with_another_partition_count_restores_records_where_the_scripts_look(
        redis_url: str, tmp_path: Path, old: int, new: int) -> None:
    """docs/ledger.md: changing `ledger_partitions` needs a rebuild. The idempotency records it restores
    must sit under the new count's keys (not the old partition's), or a retry is applied again."""
    sql = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    number = _differs((f"+1312555{i:04d}" for i in range(1000)), old, new)
    account = account_id_for(FAC, number)
    assert partition_of(account, old) != partition_of(account, new)
    call_id = _differs((f"call-{i}" for i in range(1000)), old, new)
    record = call_record(call_id, "completed", 95, 18)
    with SyncLedger(redis_url, partitions=old) as led:
        assert led.open_account("o1", FAC, number) == account
        first = led.deposit("pay-778", account, 2_500)
        led.record_call("rc1", record)
        led.set_block("b1", FAC, number, True, source="recipient")
    w = SyncWorker(redis_url, sql, partitions=old)
    w.drain()
    w.close()
    r = connect_sync(redis_url)
    r.flushall()                                                      # Redis is lost
    engine = make_engine(sql)
    rebuild(r, engine, new, DEFAULT_IDEMPOTENCY_TTL)
    engine.dispose()
    with SyncLedger(redis_url, partitions=new) as led:
        assert led.deposit("pay-778", account, 2_500) == first        # the client's retry: replayed
        assert led.balance(account).posted == 2_500
        led.record_call("rc1", record)                                # replayed
        with pytest.raises(IdConflict):                               # the record is there
            led.record_call("rc1", {**record, "amount": 19})
        with pytest.raises(IdConflict):
            led.set_block("b1", FAC, number, False)
        assert led.is_blocked(FAC, number)
    assert sum(r.xlen(Keys(p).journal) for p in range(new)) == 0      # replays journal nothing
    assert not r.exists(Keys(partition_of(account, old)).account(account))   # no stray hash
    r.close()


def test_stopping_after_a_failed_round_writes_what_it_left_pending(led: SyncLedger, redis_url: str,
                                                                    sql_url: str) -> None:
    """A round fails (database down) with a batch read ahead; the worker is stopped while it backs off.
    On stop it writes its own pending entries and what arrived meanwhile, so nothing waits `claim_idle_ms`
    for another worker to reclaim it (a drained controller's last records reach SQL at once)."""
    import threading

    migrate(sql_url)
    busy_ledger(led, 8)
    r = connect_sync(redis_url)
    total = journal_size(r)
    w = SyncWorker(redis_url, sql_url, batch=2, claim_idle_ms=600_000, run_migrations=False)
    assert w.run_once() > 0
    assert w._ahead is not None                                       # the next batch is read ahead
    working = w.engine
    w.engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    stop = threading.Event()
    thread = threading.Thread(target=w.run_forever, args=(stop,), kwargs={"idle_sleep": 60.0}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not w._recover and time.monotonic() < deadline:           # the round failed; backing off 60 s
        time.sleep(0.05)
    assert w._recover and sum(pending_per_partition(r)) > 0
    led.deposit("late", account_id_for(FAC, "+13125550000"), 100, source="web", reference="late")
    w.engine.dispose()
    w.engine = working                                                # the database is back; then stop
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert pending_per_partition(r) == [0] * 16
    assert rows(sql_url, "select count(*) from ledger_journal") == [(total + 1,)]
    assert rows(sql_url, "select amount from ledger_transfers where reference = 'late'") == [(100,)]
    assert reconcile(r, w.engine, 16) == []
    w.close()
    r.close()
