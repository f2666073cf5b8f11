"""The 180-day inactivity rule (47 CFR 64.6130): a daily sweep notices an account idle for its facility's
period minus 30 days, and refunds and closes it once idle for the whole period.

**Last activity** of an account is the newest of (epoch ms): any posted ledger movement in the SQL copy of
the journal (`ledger_transfers`: deposit, capture, settle, refund, adjust: money in, a call's spend, a
refund); the holder's verified link to it; the holder's codes (claims) on any account; a refund request on
it other than the sweep's own. Profile edits are not counted: support staff write them too.

Days are the facility's local dates: idle days = today's local date - the last activity's local date.
Idempotent: the notice is once per account and period (a row keyed by the last activity, and the notice's
dedupe key names it), the refund's request id is `inactive-<account>-<last activity ms>`, so a second run
the same day, or a run after a crash, sends nothing twice and resumes the refund where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from holders.refunds import Refunds, Target
from holders.sql.schema import holder_accounts, holder_codes, holder_inactivity, holder_refunds, holders
from ledger.sql.schema import accounts, transfers

log = structlog.get_logger("holders.inactivity")

NOTICE_DAYS = 30          # the notice goes this many days before the refund
DEFAULT_DAYS = 180


@dataclass(frozen=True)
class Rules:
    """A facility's side of the rule: its zone and period (rating's `timezone` and `inactivity_days`)."""
    tz: ZoneInfo
    days: int = DEFAULT_DAYS


@dataclass(frozen=True)
class Notice:
    dedupe_key: str
    account_id: str
    holder_id: str
    facility_id: str
    number: str
    language: str
    time_zone: str
    last_activity: date
    refund_on: date


class Notices(Protocol):
    """Where the inactivity notice goes (the host wires notify's outbox); idempotent by `dedupe_key`."""

    def inactivity(self, notice: Notice) -> None: ...


@dataclass
class SweepReport:
    noticed: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)     # refunds to re-run (calls holding money, unknown)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def last_activity(conn: Connection, account_id: str, holder_id: str | None) -> int | None:
    """The newest activity of the account and its holder, epoch ms (see the module docstring)."""
    found = [conn.execute(select(func.max(transfers.c.ts)).where(transfers.c.account_id == account_id))
             .scalar(),
             conn.execute(select(func.max(holder_refunds.c.created_ts)).where(
                 holder_refunds.c.account_id == account_id,
                 holder_refunds.c.reason != "inactivity")).scalar()]
    if holder_id is not None:
        found.append(conn.execute(select(holder_accounts.c.verified_ts).where(
            holder_accounts.c.account_id == account_id)).scalar())
        found.append(conn.execute(select(func.max(holder_codes.c.created_ts)).where(
            holder_codes.c.holder_id == holder_id)).scalar())
    times = [int(t) for t in found if t is not None]
    return max(times) if times else None


class Sweep:
    def __init__(self, engine: Engine, refunds: Refunds, facilities: Mapping[str, Rules], *,
                 notices: Notices | None, sync: Callable[[], Awaitable[None] | None],
                 clock: Callable[[], float] = time.time) -> None:
        self._engine, self._refunds, self._facilities = engine, refunds, facilities
        self._notices, self._sync, self._clock = notices, sync, clock

    async def run(self, today: date | None = None) -> SweepReport:
        """One pass. `today` is a local date in every facility's zone (default: now there)."""
        done = self._sync()
        if done is not None:
            await done
        report = SweepReport()
        with self._engine.connect() as conn:
            open_refunds = conn.execute(select(holder_refunds).where(
                holder_refunds.c.reason == "inactivity", holder_refunds.c.state != "done")).all()
        for r in open_refunds:           # an earlier pass stopped mid-way: finish it first
            await self._refund(report, r.request_id,
                               Target(r.account_id, r.facility_id, r.number_e164, r.holder_id, r.payee_name))
        with self._engine.connect() as conn:
            rows = conn.execute(select(accounts.c.account_id, accounts.c.facility_id, accounts.c.number_e164,
                                       accounts.c.owner, holder_accounts.c.holder_id)
                                .outerjoin(holder_accounts,
                                           holder_accounts.c.account_id == accounts.c.account_id)
                                .where(accounts.c.state.in_(("active", "opened")), accounts.c.posted > 0)
                                .order_by(accounts.c.account_id)).all()
        for row in rows:
            await self._account(report, row, today)
        log.info("inactivity_sweep", noticed=len(report.noticed), refunded=len(report.refunded),
                 pending=len(report.pending), skipped=len(report.skipped))
        return report

    async def _account(self, report: SweepReport, row: Any, today: date | None) -> None:
        rules = self._facilities.get(row.facility_id)
        if rules is None:        # fail closed: without its zone and period nothing is disposed of
            report.skipped.append((row.account_id, "unknown_facility"))
            return
        with self._engine.connect() as conn:
            last = last_activity(conn, row.account_id, row.holder_id)
        if last is None:
            return
        local_today = today or datetime.fromtimestamp(self._clock(), rules.tz).date()
        last_day = datetime.fromtimestamp(last / 1000, rules.tz).date()
        idle = (local_today - last_day).days
        if idle < rules.days - NOTICE_DAYS:
            return
        if self._notice(report, row, rules, last, last_day) and idle >= rules.days:
            rid = f"inactive-{row.account_id}-{last}"
            self._remember(row.account_id, last, refund_request_id=rid)
            await self._refund(report, rid, Target(row.account_id, row.facility_id, row.number_e164,
                                                   row.holder_id, row.owner))

    def _notice(self, report: SweepReport, row: Any, rules: Rules, last: int, last_day: date) -> bool:
        """Once per account and period: the notice (idempotent by key), then the row that says so."""
        with self._engine.connect() as conn:
            seen = conn.execute(select(holder_inactivity.c.noticed_ts).where(
                holder_inactivity.c.account_id == row.account_id,
                holder_inactivity.c.last_activity_ts == last)).scalar()
            holder = None if row.holder_id is None else conn.execute(
                select(holders.c.language, holders.c.time_zone)
                .where(holders.c.holder_id == row.holder_id)).first()
        if seen is not None:
            return True
        if holder is not None and self._notices is None:     # fail closed: never "noticed" unsent
            report.skipped.append((row.account_id, "no_notices"))
            return False
        if holder is None or self._notices is None:
            log.warning("inactivity_notice_nobody", account_id=row.account_id)   # no holder to tell
        else:
            self._notices.inactivity(Notice(
                f"inactivity:{row.account_id}:{last}", row.account_id, row.holder_id, row.facility_id,
                row.number_e164, holder.language, holder.time_zone, last_day,
                last_day + timedelta(days=rules.days)))
        self._remember(row.account_id, last, noticed_ts=int(self._clock() * 1000))
        report.noticed.append(row.account_id)
        return True

    def _remember(self, account_id: str, last: int, **values: object) -> None:
        with self._engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(holder_inactivity.insert().values(account_id=account_id,
                                                                   last_activity_ts=last, **values))
            except IntegrityError:
                conn.execute(update(holder_inactivity).where(holder_inactivity.c.account_id == account_id,
                                                             holder_inactivity.c.last_activity_ts == last)
                             .values(**values))

    async def _refund(self, report: SweepReport, rid: str, target: Target) -> None:
        result = await self._refunds.run(rid, target, close=True, reason="inactivity", by="inactivity-sweep")
        (report.refunded if result.state == "done" else report.pending).append(target.account_id)
