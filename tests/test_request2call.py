"""Request2Call's rules on SQLite and PostgreSQL: verified numbers only, one pending request per holder
and inmate, 7-day expiry, cancel, the facility switch, a holder never sees another's, and an answered
request notifies the holder once through the outbox."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import notify.sql
from holders.access import Actor
from holders.errors import BadInput, NotFound
from holders.request2call import DAY_MS, AlreadyPending, CallRequests, FeatureOff
from holders.sql import make_engine, migrate
from holders.sql.schema import call_requests
from ledger.sql import migrate as ledger_migrate
from notify.sql.schema import events
from tests.r2c_support import STAFF, holder_with

FAC = "FAC-07"
MARIA = "+13125551234"
JOSE = "+13125557781"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(sql_url: str, redis_url: str) -> Iterator[tuple[Engine, CallRequests, Clock, str]]:
    for m in (ledger_migrate, migrate, notify.sql.migrate):
        m(sql_url)
    engine = make_engine(sql_url)
    clock = Clock()
    off = {"FAC-21"}
    reqs = CallRequests(engine, enabled=lambda fid: fid not in off, clock=clock)
    holder = holder_with(engine, redis_url, FAC, MARIA)
    try:
        yield engine, reqs, clock, holder
    finally:
        engine.dispose()


def rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(call_requests)).scalar_one())


def test_one_pending_request_per_holder_and_inmate_and_only_to_verified_numbers(world: Any) -> None:
    engine, reqs, _clock, holder = world
    made = reqs.create(Actor.holder(holder), holder, FAC, "1042", MARIA)
    assert made.status == "pending" and made.expires_ts - made.created_ts == 7 * DAY_MS
    assert [r.request_id for r in reqs.pending_for(FAC, "1042")] == [made.request_id]
    with pytest.raises(AlreadyPending):
        reqs.create(STAFF, holder, FAC, "1042", MARIA)
    with pytest.raises(BadInput):                      # not a number this holder proved control of
        reqs.create(STAFF, holder, FAC, "1043", JOSE)
    with pytest.raises(BadInput):                      # verified at FAC-07, not at FAC-22
        reqs.create(STAFF, holder, "FAC-22", "1043", MARIA)
    for bad in ("", "10 42", "x" * 40, "1042;drop"):
        with pytest.raises(BadInput):
            reqs.create(STAFF, holder, FAC, bad, MARIA)
    with pytest.raises(BadInput):
        reqs.create(STAFF, holder, FAC, "1043", "3125551234")
    with pytest.raises(FeatureOff):
        reqs.create(STAFF, holder, "FAC-21", "2001", MARIA)
    assert rows(engine) == 1                           # nothing refused was written
    other = reqs.create(STAFF, holder, FAC, "1043", MARIA)     # another inmate: its own request
    assert {r.request_id for r in reqs.of_holder(STAFF, holder)} == {made.request_id, other.request_id}


def test_another_holder_sees_nothing_and_cannot_cancel(world: Any, redis_url: str) -> None:
    engine, reqs, _clock, holder = world
    made = reqs.create(STAFF, holder, FAC, "1042", MARIA)
    intruder = holder_with(engine, redis_url, FAC, JOSE)
    with pytest.raises(NotFound):
        reqs.of_holder(Actor.holder(intruder), holder)
    with pytest.raises(NotFound):
        reqs.cancel(Actor.holder(intruder), made.request_id)
    with pytest.raises(NotFound):                      # nor ask in another holder's name
        reqs.create(Actor.holder(intruder), holder, FAC, "1043", MARIA)
    assert reqs.pending_for(FAC, "1042")[0].status == "pending"


def test_expired_and_cancelled_requests_are_not_offered(world: Any) -> None:
    _engine, reqs, clock, holder = world
    made = reqs.create(STAFF, holder, FAC, "1042", MARIA)
    clock.now += 7 * 86400 - 1
    assert len(reqs.pending_for(FAC, "1042")) == 1
    clock.now += 1
    assert reqs.pending_for(FAC, "1042") == []
    assert [r.status for r in reqs.of_holder(STAFF, holder)] == ["expired"]
    with pytest.raises(BadInput):
        reqs.cancel(STAFF, made.request_id)
    again = reqs.create(STAFF, holder, FAC, "1042", MARIA)     # an expired one frees the slot
    assert reqs.cancel(Actor.holder(holder), again.request_id).status == "cancelled"
    assert reqs.pending_for(FAC, "1042") == []
    with pytest.raises(BadInput):
        reqs.cancel(STAFF, again.request_id)
    assert reqs.create(STAFF, holder, FAC, "1042", MARIA).status == "pending"


def test_answered_marks_the_request_and_notifies_the_holder_once(world: Any) -> None:
    engine, reqs, _clock, holder = world
    made = reqs.create(STAFF, holder, FAC, "1042", MARIA)
    assert reqs.answered(made.request_id, "c123", facility_name="Cook Valley County Jail")
    assert not reqs.answered(made.request_id, "c124")          # a repeat changes nothing
    assert reqs.pending_for(FAC, "1042") == []
    [req] = reqs.of_holder(STAFF, holder)
    assert req.status == "answered" and req.call_id == "c123"
    with engine.connect() as conn:
        found = conn.execute(select(events).where(events.c.kind == "r2c_answered")).all()
    assert len(found) == 1 and found[0].holder_id == holder
    assert json.loads(found[0].payload)["inmate"] == "1042"
    assert reqs.create(STAFF, holder, FAC, "1042", MARIA).status == "pending"  # a new one may follow
