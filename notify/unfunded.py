"""The unfunded-attempt notice: a call refused for no account or insufficient funds tells the number
called, at most once per number and facility per `hours`. Privileged and facility-blocked numbers are
never told (the caller knows and passes the flags)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

from notify.model import UNFUNDED_ATTEMPT, Event
from notify.outbox import enqueue
from notify.sql.schema import events


def unfunded_attempt(engine: Engine, facility_id: str, e164: str, at: float, *, hours: int,
                     privileged: bool = False, facility_blocked: bool = False, facility_name: str = "",
                     language: str = "en", time_zone: str = "UTC") -> bool:
    """Enqueue the notice; True when one was written. `at` is epoch seconds of the refused call.
    The window check and the insert share one transaction (BEGIN IMMEDIATE on SQLite); the dedupe key
    names the window so that two controllers racing on PostgreSQL still write one event."""
    if privileged or facility_blocked or not e164.startswith("+") or hours <= 0:
        return False
    at_ms = int(at * 1000)
    window_ms = hours * 3_600_000
    with engine.begin() as conn:
        recent = conn.execute(sa.select(events.c.event_id).where(
            events.c.kind == UNFUNDED_ATTEMPT, events.c.facility_id == facility_id,
            events.c.number_e164 == e164, events.c.created_ts > at_ms - window_ms).limit(1)).first()
        if recent is not None:
            return False
        return enqueue(conn, Event(
            kind=UNFUNDED_ATTEMPT, dedupe_key=f"unfunded:{facility_id}:{e164}:{at_ms // window_ms}",
            facility_id=facility_id, number_e164=e164, language=language, time_zone=time_zone,
            payload={"facility": facility_name or facility_id, "number": e164, "at_ms": at_ms}), at_ms=at_ms)
