"""Stateful property test: random operation sequences (with replays of earlier operation ids) against
a plain-Python model of the ledger, on a real redis-server synced to SQLite and PostgreSQL.

After every step: available >= 0 everywhere, Redis agrees with the model, no hold is resolved twice,
folding the journal from zero reproduces every balance, and after a sync SQL agrees with Redis."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from ledger import (
    AccountNotActive,
    BadAmount,
    ExceedsHold,
    HoldNotPending,
    IdConflict,
    InsufficientFunds,
    LedgerError,
    UnknownHold,
)
from ledger.errors import AccountNotEmpty
from ledger.facade import SyncLedger
from ledger.journal import ACCOUNT_OPS, decode
from ledger.keys import Keys
from ledger.reconcile import reconcile
from ledger.sql import make_engine, metadata
from ledger.sync import SyncWorker

PARTITIONS = 16
NUMBERS = ["+13125550170", "+13125550171"]
HOLD_IDS = ["h0", "h1", "h2", "nope"]
SHORT, LONG = 10, 100_000          # lease seconds: the reaper (run 100 s ahead) expires only SHORT ones


@dataclass
class Acct:
    posted: int = 0
    held: int = 0
    state: str = "opened"


@dataclass
class Hold:
    amount: int
    lease: int
    captured: int = 0
    status: str = "pending"


@dataclass
class Model:
    accounts: dict[str, Acct] = field(default_factory=dict)
    holds: dict[tuple[str, str], Hold] = field(default_factory=dict)


def refused(acct: Acct, *, closed_only: bool = False) -> type[LedgerError] | None:
    if acct.state == "closed" or (not closed_only and acct.state == "frozen"):
        return AccountNotActive
    return None


def ledger_machine(redis_url: str, sql_url: str) -> type[RuleBasedStateMachine]:
    led = SyncLedger(redis_url, partitions=PARTITIONS)
    worker = SyncWorker(redis_url, sql_url, partitions=PARTITIONS, trim=False, claim_idle_ms=0)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    engine = make_engine(sql_url)
    ids = itertools.count()

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            client.flushall()
            with engine.begin() as conn:
                for table in metadata.sorted_tables:
                    conn.execute(table.delete())
            self.model = Model()
            self.accounts: list[str] = []
            self.done: list[tuple[str, Any, Any]] = []       # (op id, call(op_id), first result)

        # --- helpers --------------------------------------------------------------------------
        def run(self, call: Any, expected: type[LedgerError] | None, amount_call: Any = None) -> Any:
            op_id = f"op{next(ids)}"
            if expected is not None:
                with pytest.raises(expected):
                    call(op_id)
                return None
            result = call(op_id)
            self.done.append((op_id, call, result))
            if amount_call is not None:
                self.conflicts.append((op_id, amount_call))
            return result

        @property
        def conflicts(self) -> list[tuple[str, Any]]:
            if not hasattr(self, "_conflicts"):
                self._conflicts: list[tuple[str, Any]] = []
            return self._conflicts

        def acct(self, i: int) -> tuple[str, Acct]:
            a = self.accounts[i % len(self.accounts)]
            return a, self.model.accounts[a]

        # --- rules ----------------------------------------------------------------------------
        @initialize()
        def open_accounts(self) -> None:
            for n in NUMBERS:
                a = led.open_account(f"open-{n[1:]}", "FAC-M", n, "owner")
                led.deposit(f"fund-{n[1:]}", a, 5_000)
                self.accounts.append(a)
                self.model.accounts[a] = Acct(posted=5_000, state="active")

        def pick_hold(self, data: st.DataObject) -> tuple[str, Acct, str]:
            """Mostly a hold that exists (so captures and settles meet real holds), sometimes any."""
            if self.model.holds and data.draw(st.integers(0, 9)) < 8:
                a, h = data.draw(st.sampled_from(sorted(self.model.holds)))
                return a, self.model.accounts[a], h
            a, m = self.acct(data.draw(st.integers(0, 1)))
            return a, m, data.draw(st.sampled_from(HOLD_IDS))

        @rule(i=st.integers(0, 1), amount=st.integers(1, 5_000))
        def deposit(self, i: int, amount: int) -> None:
            a, m = self.acct(i)
            expected = refused(m)
            self.run(lambda op: led.deposit(op, a, amount), expected,
                     lambda op: led.deposit(op, a, amount + 1))
            if expected is None:
                m.posted += amount
                m.state = "active" if m.state == "opened" else m.state

        @rule(data=st.data(), amount=st.integers(1, 2_000), lease=st.sampled_from([SHORT, LONG]))
        def hold(self, data: st.DataObject, amount: int, lease: int) -> None:
            a, m = self.acct(data.draw(st.integers(0, 1)))
            taken = sorted(h for (x, h) in self.model.holds if x == a)
            if taken and data.draw(st.integers(0, 4)) == 0:
                h = data.draw(st.sampled_from(taken))               # reusing a hold id is refused
            else:
                h = f"h{len(self.model.holds)}"
            expected = refused(m) or (IdConflict if (a, h) in self.model.holds else None) or \
                (InsufficientFunds if m.posted - m.held < amount else None)
            self.run(lambda op: led.hold(op, a, h, amount, lease_seconds=lease), expected)
            if expected is None:
                m.held += amount
                self.model.holds[(a, h)] = Hold(amount, lease)

        def _hold_error(self, a: str, h: str) -> type[LedgerError] | None:
            hold = self.model.holds.get((a, h))
            if hold is None:
                return UnknownHold
            return HoldNotPending if hold.status != "pending" else None

        @rule(data=st.data(), amount=st.integers(1, 500))
        def capture(self, data: st.DataObject, amount: int) -> None:
            a, m, h = self.pick_hold(data)
            hold = self.model.holds.get((a, h))
            expected = refused(m) or self._hold_error(a, h) or \
                (ExceedsHold if hold and hold.captured + amount > hold.amount else None)
            self.run(lambda op: led.capture(op, a, h, amount), expected)
            if expected is None:
                assert hold is not None
                m.posted -= amount
                m.held -= amount
                hold.captured += amount

        @rule(data=st.data(), total=st.integers(0, 2_000))
        def settle(self, data: st.DataObject, total: int) -> None:
            a, m, h = self.pick_hold(data)
            hold = self.model.holds.get((a, h))
            expected = self._hold_error(a, h)
            if expected is None and hold is not None:
                expected = (ExceedsHold if total > hold.amount
                            else BadAmount if total < hold.captured else None)
            self.run(lambda op: led.settle(op, a, h, total), expected)
            if expected is None:
                assert hold is not None
                m.posted -= total - hold.captured
                m.held -= hold.amount - hold.captured
                hold.captured, hold.status = total, "settled"

        @rule(data=st.data())
        def void(self, data: st.DataObject) -> None:
            a, m, h = self.pick_hold(data)
            expected = self._hold_error(a, h)
            self.run(lambda op: led.void(op, a, h, reason="hung up"), expected)
            if expected is None:
                hold = self.model.holds[(a, h)]
                m.held -= hold.amount - hold.captured
                hold.status = "voided"

        @rule(i=st.integers(0, 1), amount=st.integers(1, 4_000))
        def refund(self, i: int, amount: int) -> None:
            a, m = self.acct(i)
            expected = refused(m, closed_only=True) or \
                (InsufficientFunds if amount > m.posted - m.held else None)
            self.run(lambda op: led.refund(op, a, amount), expected, lambda op: led.refund(op, a, amount + 1))
            if expected is None:
                m.posted -= amount

        @rule(i=st.integers(0, 1), delta=st.integers(-3_000, 3_000).filter(bool))
        def adjust(self, i: int, delta: int) -> None:
            a, m = self.acct(i)
            expected = refused(m, closed_only=True) or \
                (InsufficientFunds if m.posted - m.held + delta < 0 else None)
            self.run(lambda op: led.adjust(op, a, delta, reason="model"), expected)
            if expected is None:
                m.posted += delta
                m.state = "active" if m.state == "opened" and m.posted > 0 else m.state

        @rule(i=st.integers(0, 1), action=st.sampled_from(["freeze", "unfreeze", "close", "reopen"]))
        def admin(self, i: int, action: str) -> None:
            a, m = self.acct(i)
            if action == "freeze":
                expected = refused(m, closed_only=True)
                self.run(lambda op: led.freeze(op, a), expected)
                m.state = "frozen" if expected is None else m.state
            elif action == "unfreeze":
                expected = refused(m, closed_only=True)
                self.run(lambda op: led.unfreeze(op, a), expected)
                m.state = "active" if expected is None and m.state == "frozen" else m.state
            elif action == "close":
                pending = any(k[0] == a and x.status == "pending" for k, x in self.model.holds.items())
                expected = AccountNotEmpty if m.held or m.posted or pending else None
                self.run(lambda op: led.close_account(op, a), expected)
                m.state = "closed" if expected is None else m.state
            else:
                self.run(lambda op: led.open_account(op, "FAC-M", NUMBERS[i], "owner"), None)
                m.state = "opened" if m.state == "closed" else m.state

        @rule()
        def reap(self) -> None:
            reaped = led.reap_expired(time.time() + 100)
            expected = sorted((a, h) for (a, h), x in self.model.holds.items()
                              if x.status == "pending" and x.lease == SHORT)
            assert sorted((x.account_id, x.hold_id) for x in reaped) == expected
            for key in expected:
                hold = self.model.holds[key]
                self.model.accounts[key[0]].held -= hold.amount - hold.captured
                hold.status = "expired"

        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            if not self.done:
                return
            op_id, call, first = data.draw(st.sampled_from(self.done))
            assert call(op_id) == first                      # the first result, and nothing changes

        @rule(data=st.data())
        def conflicting_replay(self, data: st.DataObject) -> None:
            if not self.conflicts:
                return
            op_id, other = data.draw(st.sampled_from(self.conflicts))
            with pytest.raises(IdConflict):
                other(op_id)

        # --- invariants -----------------------------------------------------------------------
        @invariant()
        def redis_agrees_with_model(self) -> None:
            for a, m in self.model.accounts.items():
                b = led.balance(a)
                assert b.available >= 0
                assert (b.posted, b.held, b.state) == (m.posted, m.held, m.state)
            for (a, h), hold in self.model.holds.items():
                info = led.hold_info(a, h)
                assert info is not None
                assert (info.amount, info.captured, info.status) == (hold.amount, hold.captured, hold.status)

        @invariant()
        def journal_replays_to_every_balance(self) -> None:
            posted: Counter[str] = Counter()
            held: Counter[str] = Counter()
            resolved: Counter[tuple[str, str]] = Counter()
            for p in range(PARTITIONS):
                for sid, fields in client.xrange(Keys(p).journal):
                    e = decode(p, sid, fields["e"])
                    if e.op not in ACCOUNT_OPS:
                        continue
                    posted[e.scope] += e.dp
                    held[e.scope] += e.dh
                    assert posted[e.scope] - held[e.scope] >= 0          # never negative, at any point
                    assert (posted[e.scope], held[e.scope]) == (e.posted, e.held)
                    if e.op in ("settle", "void", "expire"):
                        resolved[(e.scope, e.hold_id)] += 1
            for a, m in self.model.accounts.items():
                assert (posted[a], held[a]) == (m.posted, m.held)
            assert all(n == 1 for n in resolved.values())               # no hold resolved twice

        @invariant()
        def sql_agrees_after_sync(self) -> None:
            worker.drain()
            assert reconcile(worker.redis, engine, PARTITIONS) == []
            with engine.connect() as conn:
                sums = dict(conn.execute(sa.text(
                    "select account_id, sum(amount) from ledger_transfers group by account_id")).all())
            for a, m in self.model.accounts.items():
                assert int(sums.get(a, 0)) == m.posted                   # transfers add up to the balance

    LedgerMachine.cleanup_resources = lambda: (led.close(), worker.close(), client.close(),  # type: ignore[attr-defined]
                                               engine.dispose())
    return LedgerMachine


def test_ledger_matches_model(redis_url: str, sql_url: str) -> None:
    machine = ledger_machine(redis_url, sql_url)
    try:
        # No shrinking: every step syncs to SQL, so shrinking a failure would take many minutes; the
        # failing program is printed step by step as generated.
        run_state_machine_as_test(machine, settings=settings(
            max_examples=25, stateful_step_count=40, deadline=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        machine.cleanup_resources()  # type: ignore[attr-defined]
