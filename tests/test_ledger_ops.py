"""Ledger operation semantics against a real redis-server: two-phase holds, states, idempotency, bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ledger import (
    AccountNotActive,
    BadAmount,
    BadId,
    BadInput,
    ExceedsHold,
    HoldNotPending,
    IdConflict,
    InsufficientFunds,
    LedgerUnavailable,
    UnknownAccount,
    UnknownHold,
)
from ledger.errors import AccountNotEmpty
from ledger.facade import SyncLedger
from ledger.money import parse_dollars

FAC = "FAC-01"
NUM = "+13125550100"


@pytest.fixture
def led(redis_url: str) -> Iterator[SyncLedger]:
    with SyncLedger(redis_url) as ledger:
        yield ledger


@pytest.fixture
def acct(led: SyncLedger) -> str:
    account = led.open_account("open-1", FAC, NUM, "Pat Doe")
    led.deposit("dep-1", account, 10_000)
    return account


def dump(url: str) -> dict[bytes, bytes]:
    """Every key of the database, serialised: equal dumps mean nothing changed."""
    client = redis.Redis.from_url(url)
    try:
        return {key: client.dump(key) for key in sorted(client.keys("*"))}
    finally:
        client.close()


def test_open_is_idempotent_and_funding_activates(led: SyncLedger) -> None:
    account = led.open_account("o1", FAC, NUM, "Pat")
    assert led.open_account("o1", FAC, NUM, "Pat") == account
    assert led.open_account("o2", FAC, NUM) == account              # same number, same account
    assert led.find_account(FAC, NUM) == account
    assert led.find_account(FAC, "+13125550199") is None
    other = led.open_account("o3", "FAC-02", NUM)                  # one person, several accounts
    assert other != account
    assert led.balance(account).state == "opened"
    b = led.deposit("d1", account, 2_500, source="web", reference="pay-77")
    assert (b.posted, b.held, b.available, b.state) == (2_500, 0, 2_500, "active")


def _funded_with_probe(led: SyncLedger, redis_url: str) -> tuple[str, Any]:
    """A funded account, and a probe of its version and the journal's length (what a no-op must keep)."""
    from ledger.keys import Keys
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    a = led.open_account("o1", FAC, NUM)
    led.deposit("d1", a, 100)

    def version_and_journal() -> tuple[str, int]:
        return r.hget(_key(a), "v"), sum(r.xlen(Keys(p).journal) for p in range(16))

    return a, version_and_journal


def test_opening_an_open_account_and_closing_a_closed_one_change_nothing(led: SyncLedger,
                                                                         redis_url: str) -> None:
    """No new version and no journal entry (docs: "changes nothing"); the result is the same as before,
    and the op id keeps it for replays."""
    a, version_and_journal = _funded_with_probe(led, redis_url)

    before = version_and_journal()
    assert led.open_account("o2", FAC, NUM, "someone else") == a
    assert version_and_journal() == before
    assert led.balance(a).state == "active"
    owner = redis.Redis.from_url(redis_url, decode_responses=True).hget(_key(a), "o")
    assert owner == ""                                              # the owner is not changed either
    led.refund("r1", a, 100)
    led.close_account("x1", a)
    before = version_and_journal()
    b = led.close_account("x2", a)
    assert (b.posted, b.held, b.state) == (0, 0, "closed")
    assert version_and_journal() == before
    led.open_account("o3", FAC, NUM)                                # reopened
    assert led.close_account("x2", a).state == "closed"             # a replay: its first result...
    assert led.balance(a).state == "opened"                         # ...and the account stays open
    with pytest.raises(IdConflict):
        led.close_account("x2", a, reason="other")


def test_freezing_a_frozen_account_and_unfreezing_an_active_one_change_nothing(led: SyncLedger,
                                                                              redis_url: str) -> None:
    a, version_and_journal = _funded_with_probe(led, redis_url)

    before = version_and_journal()
    assert led.unfreeze("u1", a).state == "active"                  # active already
    assert version_and_journal() == before
    led.freeze("f1", a, reason="chargeback")
    before = version_and_journal()
    assert led.freeze("f2", a, reason="again").state == "frozen"
    assert version_and_journal() == before
    assert led.freeze("f2", a, reason="again").state == "frozen"    # a replay: the same result
    assert led.unfreeze("u2", a).state == "active"                  # a real change still counts
    assert version_and_journal() != before


def test_hold_capture_settle(led: SyncLedger, acct: str) -> None:
    b = led.hold("h1", acct, "call-1", 3_000, lease_seconds=600, meta={"call_id": "call-1"})
    assert (b.posted, b.held, b.available) == (10_000, 3_000, 7_000)
    s = led.capture("c1", acct, "call-1", 1_000)
    assert (s.amount, s.captured, s.status, s.meta) == (3_000, 1_000, "pending", {"call_id": "call-1"})
    led.capture("c2", acct, "call-1", 1_500)
    with pytest.raises(ExceedsHold):
        led.capture("c3", acct, "call-1", 501)
    assert led.balance(acct).available == 7_000                     # captures move held to posted-out
    assert led.balance(acct).posted == 7_500
    with pytest.raises(ExceedsHold):
        led.settle("s0", acct, "call-1", 3_001)
    with pytest.raises(BadAmount):
        led.settle("s0", acct, "call-1", 2_000)                     # below what is already captured
    s = led.settle("s1", acct, "call-1", 2_700)
    assert (s.captured, s.status) == (2_700, "settled")
    b = led.balance(acct)
    assert (b.posted, b.held, b.available) == (7_300, 0, 7_300)
    with pytest.raises(HoldNotPending):                            # a hold resolves at most once
        led.void("v1", acct, "call-1")
    with pytest.raises(HoldNotPending):
        led.settle("s2", acct, "call-1", 2_700)
    with pytest.raises(HoldNotPending):
        led.capture("c4", acct, "call-1", 1)
    assert led.hold_info(acct, "call-1") == s


def test_void_keeps_captured_part_and_settle_zero_releases_all(led: SyncLedger, acct: str) -> None:
    led.hold("h1", acct, "a", 4_000, lease_seconds=600)
    led.capture("c1", acct, "a", 700)
    v = led.void("v1", acct, "a", reason="caller hung up")
    assert (v.captured, v.status) == (700, "voided")
    assert led.balance(acct) .available == 9_300
    led.hold("h2", acct, "b", 1_000, lease_seconds=600)
    assert led.settle("s1", acct, "b", 0).status == "settled"      # nothing billed: all released
    b = led.balance(acct)
    assert (b.posted, b.held) == (9_300, 0)


def test_hold_refused_beyond_available(led: SyncLedger, acct: str) -> None:
    led.hold("h1", acct, "a", 9_000, lease_seconds=600)
    before = led.balance(acct)
    with pytest.raises(InsufficientFunds):
        led.hold("h2", acct, "b", 1_001, lease_seconds=600)
    assert led.balance(acct) == before
    led.hold("h3", acct, "c", 1_000, lease_seconds=600)
    assert led.balance(acct).available == 0
    with pytest.raises(IdConflict):                                 # a hold id is used once per account
        led.hold("h4", acct, "a", 1, lease_seconds=600)
    with pytest.raises(UnknownHold):
        led.capture("c1", acct, "nope", 1)
    assert led.hold_info(acct, "nope") is None


def test_replay_returns_first_result_and_conflicts_are_refused(led: SyncLedger, acct: str) -> None:
    first = led.deposit("d2", acct, 500)
    led.deposit("d3", acct, 700)
    assert led.deposit("d2", acct, 500) == first                    # the first result, not today's balance
    assert led.balance(acct).posted == 11_200
    with pytest.raises(IdConflict):
        led.deposit("d2", acct, 501)
    with pytest.raises(IdConflict):
        led.refund("d2", acct, 500)                                 # same id, other operation
    h = led.hold("h1", acct, "x", 100, lease_seconds=60)
    assert led.hold("h1", acct, "x", 100, lease_seconds=60) == h
    s = led.settle("s1", acct, "x", 50)
    assert led.settle("s1", acct, "x", 50) == s
    with pytest.raises(IdConflict):
        led.settle("s1", acct, "x", 60)
    # A refusal is not recorded: the same id may succeed once the account can pay.
    with pytest.raises(InsufficientFunds):
        led.refund("r1", acct, 20_000)
    led.deposit("d4", acct, 10_000)
    assert led.refund("r1", acct, 20_000).posted == 1_150


def test_frozen_account_lets_a_running_call_finish(led: SyncLedger, acct: str) -> None:
    led.hold("h1", acct, "run", 2_000, lease_seconds=600)
    led.hold("h2", acct, "run2", 1_000, lease_seconds=600)
    led.capture("c1", acct, "run", 500)
    assert led.freeze("f1", acct, reason="chargeback").state == "frozen"
    with pytest.raises(AccountNotActive):
        led.capture("c2", acct, "run", 500)                         # the controller hangs up
    with pytest.raises(AccountNotActive):
        led.hold("h3", acct, "new", 100, lease_seconds=60)
    with pytest.raises(AccountNotActive):
        led.deposit("d9", acct, 100)
    assert led.settle("s1", acct, "run", 900).status == "settled"
    assert led.void("v1", acct, "run2").status == "voided"
    assert led.refund("r1", acct, 100).state == "frozen"
    b = led.unfreeze("u1", acct)
    assert (b.state, b.posted, b.held) == ("active", 9_000, 0)
    assert led.hold("h4", acct, "again", 100, lease_seconds=60).held == 100   # works again


def test_close_needs_an_empty_account_and_refuses_everything_after(led: SyncLedger, acct: str) -> None:
    led.hold("h1", acct, "a", 100, lease_seconds=60)
    with pytest.raises(AccountNotEmpty):
        led.close_account("x1", acct)
    led.void("v1", acct, "a")
    with pytest.raises(AccountNotEmpty):
        led.close_account("x1", acct)                               # balance > 0: refund it first
    led.refund("r1", acct, 10_000, reason="released")
    assert led.close_account("x1", acct, reason="released").state == "closed"
    for call in (lambda: led.deposit("d", acct, 1), lambda: led.hold("h", acct, "b", 1, lease_seconds=9),
                 lambda: led.refund("r", acct, 1), lambda: led.adjust("a", acct, 1, reason="x"),
                 lambda: led.freeze("f", acct), lambda: led.unfreeze("u", acct),
                 lambda: led.capture("c", acct, "a", 1)):
        with pytest.raises(AccountNotActive):
            call()
    assert led.open_account("reopen", FAC, NUM) == acct             # the family comes back later
    assert led.balance(acct).state == "opened"


def test_close_waits_for_a_pending_hold_even_when_fully_captured(led: SyncLedger, redis_url: str) -> None:
    """A hold captured in full holds nothing, but its call is still running: the account stays open."""
    a = led.open_account("o1", FAC, NUM)
    led.deposit("d1", a, 100)
    led.hold("h1", a, "call-1", 100, lease_seconds=600)
    led.capture("c1", a, "call-1", 100)
    b = led.balance(a)
    assert (b.posted, b.held) == (0, 0)
    before = dump(redis_url)
    with pytest.raises(AccountNotEmpty, match="call-1"):
        led.close_account("x1", a)
    assert dump(redis_url) == before                                # refused: nothing changed
    led.settle("s1", a, "call-1", 100)
    assert led.close_account("x1", a).state == "closed"             # the same id, once it is settled


def test_adjust_needs_a_reason_and_never_overdraws(led: SyncLedger, acct: str) -> None:
    with pytest.raises(BadInput):
        led.adjust("a1", acct, 100, reason="")
    with pytest.raises(BadInput):
        led.adjust("a1", acct, 100, reason="   ")
    led.hold("h1", acct, "a", 9_000, lease_seconds=60)
    with pytest.raises(InsufficientFunds):
        led.adjust("a1", acct, -1_001, reason="correction")
    assert led.adjust("a1", acct, -1_000, reason="correction").available == 0
    fresh = led.open_account("o9", FAC, "+13125550101")
    assert led.adjust("a2", fresh, 250, reason="goodwill credit").state == "active"


def test_max_amount_above_ten_to_the_twelve_is_refused(redis_url: str) -> None:
    """Lua counts in doubles: a ceiling near 2**53 would let single amounts lose cents."""
    for bad in (10**12 + 1, 10**17, 0, 1.5, "100"):
        with pytest.raises(ValueError, match="max_amount"):
            SyncLedger(redis_url, max_amount=bad)
    with SyncLedger(redis_url, max_amount=10**12) as big:
        a = big.open_account("o1", FAC, NUM)
        assert big.deposit("d1", a, 10**12).posted == 10**12


def test_posted_never_passes_two_to_the_53(led: SyncLedger, acct: str, redis_url: str) -> None:
    """A deposit or adjust that would take posted above 2**53 - 1 (where Lua's doubles stop counting
    every cent) is refused with BadAmount and changes nothing; up to it, every cent counts."""
    top = 2**53 - 1
    redis.Redis.from_url(redis_url).hset(_key(acct), "p", str(top - 10))   # a balance built up over time
    before = dump(redis_url)
    for call in (lambda: led.deposit("d-over", acct, 11), lambda: led.adjust("a-over", acct, 11, reason="x")):
        with pytest.raises(BadAmount, match="2\\^53-1"):
            call()
    assert dump(redis_url) == before
    assert led.deposit("d-top", acct, 5).posted == top - 5
    assert led.adjust("a-top", acct, 5, reason="credit").posted == top              # exactly, odd
    assert led.adjust("a-down", acct, -1, reason="fee").posted == top - 1
    with pytest.raises(BadAmount):
        led.deposit("d-over", acct, 2)


def test_old_records_are_compacted_away(redis_url: str) -> None:
    """Idempotency records and resolved holds older than the TTL leave the account's hash."""
    with SyncLedger(redis_url, idempotency_ttl=1) as short:
        a = short.open_account("o1", FAC, NUM)
        short.deposit("d1", a, 1_000)
        short.hold("h1", a, "done", 100, lease_seconds=1)
        short.settle("s1", a, "done", 40)
        short.hold("h2", a, "open", 100, lease_seconds=600)
        time.sleep(2.2)
        for i in range(50):                                         # compaction runs every 50 versions
            short.deposit(f"more{i}", a, 1)
        assert short.hold_info(a, "done") is None
        assert short.hold_info(a, "open").status == "pending"       # type: ignore[union-attr]
        fields = redis.Redis.from_url(redis_url, decode_responses=True).hkeys(_key(a))
        assert "o:d1" not in fields and "o:more49" in fields
        assert short.deposit("d1", a, 1_000).posted == 960 + 50 + 1_000   # beyond the TTL: a new deposit


def test_accounts_stay_apart_when_the_key_cache_restarts(redis_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ledger remembers each account's key names (ledger.core.ACCOUNT_CACHE of them, then starts over)."""
    monkeypatch.setattr("ledger.core.ACCOUNT_CACHE", 2)
    with SyncLedger(redis_url) as led:
        accounts = [led.open_account(f"o{i}", FAC, f"+1312555020{i}") for i in range(5)]
        for rnd in range(2):
            for i, a in enumerate(accounts):
                led.deposit(f"d{rnd}-{i}", a, 100 * (i + 1))
        assert [led.balance(a).posted for a in accounts] == [200 * (i + 1) for i in range(5)]
        assert len(led.ledger._accounts) <= 2


def _key(account_id: str) -> str:
    from ledger.keys import Keys, partition_of
    return Keys(partition_of(account_id, 16)).account(account_id)


def test_unknown_accounts(led: SyncLedger) -> None:
    ghost = "ap_00000000000000000000"
    for call in (lambda: led.balance(ghost), lambda: led.deposit("d", ghost, 1),
                 lambda: led.hold("h", ghost, "x", 1, lease_seconds=9),
                 lambda: led.capture("c", ghost, "x", 1),
                 lambda: led.settle("s", ghost, "x", 1), lambda: led.void("v", ghost, "x"),
                 lambda: led.refund("r", ghost, 1), lambda: led.adjust("a", ghost, 1, reason="x"),
                 lambda: led.freeze("f", ghost), lambda: led.unfreeze("u", ghost),
                 lambda: led.close_account("x", ghost)):
        with pytest.raises(UnknownAccount):
            call()


NAIVE = "2024-01-01T00:00"   # no UTC offset
BAD_AMOUNTS = [0, -1, 1.5, "10", 100_001, 10**30, True, None, 10.0]
BAD_IDS = ["", "a" * 129, "has space", "semi;colon", "pipe|id", "uni\u00e9", None, 12, "new\nline"]


def _bad_calls(acct: str) -> list[tuple[str, object]]:
    calls: list[tuple[str, object]] = []
    for amount in BAD_AMOUNTS:
        calls += [
            ("deposit", lambda led, a=amount: led.deposit("bad-1", acct, a)),
            ("hold", lambda led, a=amount: led.hold("bad-2", acct, "hx", a, lease_seconds=60)),
            ("capture", lambda led, a=amount: led.capture("bad-3", acct, "live", a)),
            ("refund", lambda led, a=amount: led.refund("bad-4", acct, a)),
        ]
        if amount != -1:                                            # a valid (signed) adjustment
            calls.append(("adjust", lambda led, a=amount: led.adjust("bad-5", acct, a, reason="r")))
        if amount != 0:                                             # settle total 0: nothing billed
            calls.append(("settle", lambda led, a=amount: led.settle("bad-6", acct, "live", a)))
    for bad in BAD_IDS:
        calls += [
            ("deposit op", lambda led, b=bad: led.deposit(b, acct, 100)),
            ("deposit acct", lambda led, b=bad: led.deposit("bad-7", b, 100)),
            ("hold id", lambda led, b=bad: led.hold("bad-8", acct, b, 100, lease_seconds=60)),
            ("capture id", lambda led, b=bad: led.capture("bad-9", acct, b, 1)),
            ("settle id", lambda led, b=bad: led.settle("bad-10", acct, b, 1)),
            ("void id", lambda led, b=bad: led.void("bad-11", acct, b)),
            ("freeze op", lambda led, b=bad: led.freeze(b, acct)),
            ("close op", lambda led, b=bad: led.close_account(b, acct)),
            ("open facility", lambda led, b=bad: led.open_account("bad-12", b, NUM)),
            ("block facility", lambda led, b=bad: led.set_block("bad-13", b, NUM, True)),
            ("record call id", lambda led, b=bad: led.record_call("bad-14", _call(b))),
        ]
    calls += [
        ("open number", lambda led: led.open_account("bad-15", FAC, "3125550100")),
        ("open number", lambda led: led.open_account("bad-15", FAC, "+0123")),
        ("hold lease", lambda led: led.hold("bad-16", acct, "hy", 100, lease_seconds=0)),
        ("hold lease", lambda led: led.hold("bad-16", acct, "hy", 100, lease_seconds=1.5)),
        ("hold meta", lambda led: led.hold("bad-17", acct, "hy", 100, lease_seconds=9, meta={"a": 1})),
        ("reason ctrl", lambda led: led.refund("bad-18", acct, 1, reason="a\x1fb")),
        ("block flag", lambda led: led.set_block("bad-19", FAC, NUM, "yes")),
        ("call record", lambda led: led.record_call("bad-20", {**_call("c1"), "amount": -5})),
        ("call record", lambda led: led.record_call("bad-20", {**_call("c1"), "started_at": "yesterday"})),
        ("call record", lambda led: led.record_call("bad-20", {**_call("c1"), "ended_at": NAIVE})),
        ("call record", lambda led: led.record_call("bad-20", {**_call("c1"), "extra": 1})),
        ("call record", lambda led: led.record_call("bad-20", {**_call("c1"), "recorded": 1})),
    ]
    return calls


def _call(call_id: object) -> dict[str, object]:
    return {"call_id": call_id, "facility_id": FAC, "inmate_id": "I-1", "account_id": "",
            "dialled": "3125550100", "number_e164": NUM, "call_class": "prepaid", "outcome": "refused",
            "reason": "",
            "started_at": "2024-05-01T10:00:00Z", "answered_at": "", "accepted_at": "", "ended_at": "",
            "billed_seconds": 0, "amount": 0, "recorded": False, "privileged": False}


def test_bad_input_is_refused_with_a_typed_error_and_changes_nothing(led: SyncLedger, acct: str,
                                                                     redis_url: str) -> None:
    led.hold("h-live", acct, "live", 1_000, lease_seconds=600)
    before = dump(redis_url)
    calls = _bad_calls(acct)
    assert len(calls) > 150
    for name, call in calls:
        try:
            call(led)  # type: ignore[operator]
        except (BadAmount, BadId, BadInput) as exc:
            assert exc.code in ("bad_amount", "bad_id", "bad_input")
        else:
            pytest.fail(f"{name}: accepted")
    assert dump(redis_url) == before


def test_refusals_change_nothing(led: SyncLedger, acct: str, redis_url: str) -> None:
    led.hold("h1", acct, "live", 9_000, lease_seconds=600)
    led.freeze("f1", acct)
    closed = led.open_account("o2", FAC, "+13125550102")
    led.close_account("x2", closed)
    before = dump(redis_url)
    refusals = [
        (lambda: led.hold("h2", acct, "n", 1, lease_seconds=9), AccountNotActive),
        (lambda: led.capture("c1", acct, "live", 1), AccountNotActive),
        (lambda: led.deposit("d1", closed, 100), AccountNotActive),
        (lambda: led.settle("s1", acct, "live", 9_001), ExceedsHold),
        (lambda: led.refund("r1", acct, 1_001), InsufficientFunds),
        (lambda: led.void("v1", acct, "ghost"), UnknownHold),
        (lambda: led.deposit("dep-1", acct, 1), IdConflict),
        (lambda: led.close_account("x1", acct), AccountNotEmpty),
    ]
    for call, error in refusals:
        with pytest.raises(error):
            call()
    assert dump(redis_url) == before


def test_blocks_are_honoured_at_once(led: SyncLedger) -> None:
    assert led.is_blocked(FAC, NUM) is False
    led.set_block("b1", FAC, NUM, True, source="recipient-keypad")
    assert led.is_blocked(FAC, NUM) is True
    assert led.is_blocked("FAC-02", NUM) is False                   # a block is per facility
    led.set_block("b1", FAC, NUM, True, source="recipient-keypad")  # replay
    with pytest.raises(IdConflict):
        led.set_block("b1", FAC, NUM, False)
    led.set_block("b2", FAC, NUM, False, source="facility")
    assert led.is_blocked(FAC, NUM) is False


def test_an_inmate_block_stops_that_inmate_only(led: SyncLedger, redis_url: str) -> None:
    led.set_block("i1", FAC, NUM, True, source="holder-h1", inmate_id="1001")
    assert led.is_blocked(FAC, NUM, "1001") is True
    assert led.is_blocked(FAC, NUM, "1002") is False                # another inmate at the facility
    assert led.is_blocked(FAC, NUM) is False                        # the facility is not blocked
    assert led.is_blocked("FAC-02", NUM, "1001") is False           # nor the inmate elsewhere
    assert led.blocked_inmates(FAC, NUM) == {"1001": "holder-h1"}
    before = dump(redis_url)
    led.set_block("i1", FAC, NUM, True, source="holder-h1", inmate_id="1001")   # replay: nothing new
    assert dump(redis_url) == before
    with pytest.raises(IdConflict):                                 # the same id, another payload
        led.set_block("i1", FAC, NUM, False, source="holder-h1", inmate_id="1001")
    led.set_block("f1", FAC, NUM, True, source="recipient")         # the facility: every inmate
    assert led.is_blocked(FAC, NUM, "1002") is True
    led.set_block("f2", FAC, NUM, False)                            # the inmate's block stays
    assert (led.is_blocked(FAC, NUM, "1001"), led.is_blocked(FAC, NUM, "1002")) == (True, False)
    led.set_block("i2", FAC, NUM, False, inmate_id="1001")
    assert led.is_blocked(FAC, NUM, "1001") is False
    assert led.blocked_inmates(FAC, NUM) == {}
    with pytest.raises(BadId):
        led.set_block("i3", FAC, NUM, True, inmate_id="10/01")


def test_record_call_is_idempotent(led: SyncLedger) -> None:
    led.record_call("r1", _call("call-9"))
    led.record_call("r1", _call("call-9"))
    with pytest.raises(IdConflict):
        led.record_call("r1", {**_call("call-9"), "outcome": "completed"})


def test_redis_down_raises_ledger_unavailable(tmp_path: Path) -> None:
    # A socket nobody listens on (a unix path needs no free port, so a busy machine cannot break this).
    with pytest.raises(LedgerUnavailable):
        SyncLedger(f"unix://{tmp_path / 'nobody.sock'}?db=0", timeout=1.0)


@pytest.mark.parametrize(("amount", "cents"), [("25", 2_500), ("25.5", 2_550), ("$1,025.00", 102_500),
                                               (".05", 5), (" 7.00 ", 700)])
def test_dollars_parse_to_exact_cents(amount: str, cents: int) -> None:
    assert parse_dollars(amount) == cents


@pytest.mark.parametrize("amount", [
    "١٢٣", "５", "1٠", "٫5", "1e3", "1_000", "1,00", "0", "0.00", "5.001", "-5", "+5", "9" * 16, "9" * 5_000,
])
def test_dollars_refused(amount: str) -> None:
    with pytest.raises(BadAmount):
        parse_dollars(amount)


@pytest.mark.parametrize("amount", ["١٢٣", "５", "9" * 5_000])
def test_cli_deposit_in_non_ascii_digits_is_refused_and_posts_nothing(
        led: SyncLedger, acct: str, redis_url: str, amount: str, capsys: pytest.CaptureFixture[str]) -> None:
    from callcontrol.cli import build_parser
    from callcontrol.platform.config import Settings

    before = dump(redis_url)
    args = build_parser().parse_args(["ledger", "deposit", acct, amount])
    assert args.func(args, Settings(redis_url=redis_url)) == 2
    assert "bad_amount" in capsys.readouterr().err
    assert dump(redis_url) == before and led.balance(acct).posted == 10_000
    args = build_parser().parse_args(["ledger", "deposit", acct, "1.23"])
    assert args.func(args, Settings(redis_url=redis_url)) == 0
    assert led.balance(acct).posted == 10_123
