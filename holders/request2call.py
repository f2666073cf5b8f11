"""Request2Call: a holder asks an inmate to call one of the holder's verified numbers (free).

One pending request per holder and inmate (a unique `pending_key`, cleared when the request closes);
a request expires `days` after it was made; only a number the holder proved control of (a verified
link at that facility, active holder) may be asked for. The inmate side reads the pending requests in
one SELECT (`pending_for`) and marks one answered (`answered`), which enqueues the holder's
"Request2Call answered" notice in the same transaction.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, select, update

from holders.access import Actor
from holders.errors import BadInput, HolderError, NotFound
from holders.sql.schema import call_requests as t
from holders.sql.schema import holder_accounts, holders

DEFAULT_DAYS = 7
DAY_MS = 86_400_000
_INMATE_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class AlreadyPending(HolderError):
    """The holder already has a pending request for this inmate: cancel it or wait for it."""

    code = "already_pending"


class FeatureOff(HolderError):
    """The facility has switched Request2Call off."""

    code = "request2call_off"


@dataclass(frozen=True)
class Request:
    request_id: str
    holder_id: str
    account_id: str
    facility_id: str
    inmate_id: str
    number_e164: str
    name_file: str
    status: str            # pending answered cancelled expired (a pending one past its expiry reads expired)
    created_ts: int
    expires_ts: int
    closed_ts: int | None
    call_id: str


def _request(row: Any, now_ms: int) -> Request:
    status = row.status
    if status == "pending" and row.expires_ts <= now_ms:
        status = "expired"
    return Request(row.request_id, row.holder_id, row.account_id, row.facility_id, row.inmate_id,
                   row.number_e164, row.name_file, status, int(row.created_ts), int(row.expires_ts),
                   None if row.closed_ts is None else int(row.closed_ts), row.call_id)


def check_inmate(inmate_id: str) -> str:
    inmate_id = str(inmate_id).strip()
    if not _INMATE_RE.match(inmate_id):
        raise BadInput("an inmate number is 1-32 letters, digits or '-'")
    return inmate_id


class CallRequests:
    """The API (support CLI, the web, the 800 line and the inmate flow use the same functions).
    ``enabled(facility_id)`` is the facility's `request2call` switch; ``clock`` returns epoch seconds."""

    def __init__(self, engine: Engine, *, days: int = DEFAULT_DAYS,
                 enabled: Callable[[str], bool] = lambda _facility: True,
                 clock: Callable[[], float] = time.time) -> None:
        if not 1 <= days <= 90:
            raise ValueError("call_request_days must be 1..90")
        self._engine = engine
        self._days = days
        self._enabled = enabled
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def holder_for(self, facility_id: str, number: str) -> tuple[str, str] | None:
        """(holder, account) of the active holder with a verified link to this number here, else None."""
        with self._engine.connect() as conn:
            row = conn.execute(select(holder_accounts.c.holder_id, holder_accounts.c.account_id)
                               .join(holders, holders.c.holder_id == holder_accounts.c.holder_id)
                               .where(holder_accounts.c.facility_id == facility_id,
                                      holder_accounts.c.number_e164 == number,
                                      holders.c.status == "active")).first()
        return None if row is None else (row.holder_id, row.account_id)

    def create(self, actor: Actor, holder_id: str, facility_id: str, inmate_id: str, number: str, *,
               name_file: str = "") -> Request:
        """A new pending request; bad input, an unverified number or a pending one change nothing."""
        actor.check(holder_id)
        inmate_id = check_inmate(inmate_id)
        if not _E164_RE.match(str(number)):
            raise BadInput("the number must be E.164, e.g. +13125550100")
        if len(name_file) > 400:
            raise BadInput("name file path too long")
        if not self._enabled(facility_id):
            raise FeatureOff(f"Request2Call is switched off at {facility_id}")
        now = self._now()
        key = f"{holder_id}|{facility_id}|{inmate_id}"
        with self._engine.begin() as conn:
            link = conn.execute(select(holder_accounts.c.account_id, holders.c.status)
                                .join(holders, holders.c.holder_id == holder_accounts.c.holder_id)
                                .where(holder_accounts.c.holder_id == holder_id,
                                       holder_accounts.c.facility_id == facility_id,
                                       holder_accounts.c.number_e164 == number)).first()
            if link is None:
                raise BadInput(f"{number} at {facility_id} is not a verified number of {holder_id}")
            if link.status != "active":
                raise BadInput(f"holder {holder_id} is {link.status}")
            # a pending request past its expiry frees the slot
            conn.execute(update(t).where(t.c.pending_key == key, t.c.expires_ts <= now)
                         .values(status="expired", pending_key=None, closed_ts=now))
            if conn.execute(select(t.c.request_id).where(t.c.pending_key == key)).first() is not None:
                raise AlreadyPending(f"{holder_id} already has a pending request for {inmate_id}")
            row = {"request_id": "r_" + secrets.token_hex(10), "holder_id": holder_id,
                   "account_id": link.account_id, "facility_id": facility_id, "inmate_id": inmate_id,
                   "number_e164": number, "name_file": name_file, "status": "pending", "pending_key": key,
                   "created_ts": now, "expires_ts": now + self._days * DAY_MS, "closed_ts": None,
                   "call_id": "", "created_by": actor.staff or "holder"}
            try:
                conn.execute(t.insert().values(**row))
            except Exception as exc:            # a concurrent create won the unique pending_key
                if "unique" in str(exc).lower() or "duplicate" in str(exc).lower():
                    raise AlreadyPending(f"{holder_id} already has a pending request for {inmate_id}") \
                        from None
                raise
        return _request(_Row(row), now)

    def of_holder(self, actor: Actor, holder_id: str, *, pending_only: bool = False) -> list[Request]:
        actor.check(holder_id)
        now = self._now()
        query = select(t).where(t.c.holder_id == holder_id).order_by(t.c.created_ts.desc())
        if pending_only:
            query = query.where(t.c.status == "pending", t.c.expires_ts > now)
        with self._engine.connect() as conn:
            return [_request(r, now) for r in conn.execute(query)]

    def cancel(self, actor: Actor, request_id: str) -> Request:
        """Cancel a pending request; another holder's is NotFound, a closed one is BadInput."""
        now = self._now()
        with self._engine.begin() as conn:
            row = self._own(conn, actor, request_id)
            current = _request(row, now)
            if current.status != "pending":
                raise BadInput(f"request {request_id} is {current.status}")
            conn.execute(update(t).where(t.c.request_id == request_id, t.c.status == "pending")
                         .values(status="cancelled", pending_key=None, closed_ts=now))
            row = conn.execute(select(t).where(t.c.request_id == request_id)).one()
        return _request(row, now)

    def _own(self, conn: Connection, actor: Actor, request_id: str) -> Any:
        row = conn.execute(select(t).where(t.c.request_id == str(request_id))).first()
        if row is None:
            raise NotFound(f"no request {request_id}")
        actor.check(row.holder_id)
        return row

    # -- the inmate side ---------------------------------------------------------------------------
    def pending_for(self, facility_id: str, inmate_id: str) -> list[Request]:
        """The inmate's pending, unexpired requests, oldest first: one indexed SELECT."""
        now = self._now()
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(and_(t.c.facility_id == facility_id,
                                                     t.c.inmate_id == str(inmate_id),
                                                     t.c.status == "pending", t.c.expires_ts > now))
                                .order_by(t.c.created_ts)).all()
        return [_request(r, now) for r in rows]

    def inmates_waiting(self, facility_id: str) -> frozenset[str]:
        """The inmates of a facility with a pending, unexpired request: one SELECT for every call set-up
        of the next few seconds (callcontrol/holder_data.py caches it)."""
        now = self._now()
        with self._engine.connect() as conn:
            found = conn.execute(select(t.c.inmate_id).distinct().where(
                t.c.facility_id == facility_id, t.c.status == "pending", t.c.expires_ts > now)).scalars()
            return frozenset(found)

    def answered(self, request_id: str, call_id: str, *, facility_name: str = "") -> bool:
        """Mark the request answered by `call_id` and enqueue the holder's notice, in one transaction.
        True when this call closed it; a repeat (same request) changes nothing and notifies no one twice."""
        from notify.model import R2C_ANSWERED, Event
        from notify.outbox import enqueue

        now = self._now()
        with self._engine.begin() as conn:
            row = conn.execute(select(t, holders.c.language, holders.c.time_zone)
                               .join(holders, holders.c.holder_id == t.c.holder_id)
                               .where(t.c.request_id == request_id)).first()
            if row is None or row.status != "pending":
                return False
            conn.execute(update(t).where(t.c.request_id == request_id, t.c.status == "pending")
                         .values(status="answered", pending_key=None, closed_ts=now, call_id=call_id))
            enqueue(conn, Event(
                kind=R2C_ANSWERED, dedupe_key=f"r2c:{request_id}", account_id=row.account_id,
                holder_id=row.holder_id, facility_id=row.facility_id, number_e164=row.number_e164,
                language=row.language if row.language in ("en", "es") else "en", time_zone=row.time_zone,
                payload={"inmate": row.inmate_id, "facility": facility_name or row.facility_id,
                         "request_id": request_id, "call_id": call_id}), at_ms=now)
        return True


class _Row:
    """A dict read like a result row (the inserted values)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
