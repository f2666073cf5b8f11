"""The RecipientDirectory notify's worker asks who hears of an event, from the holders' tables.

An event names an account (or a holder, or a number and facility); its holder hears by SMS to the
mobile and email, less the channels they switched off. Low balance goes by the channels set with the
account's threshold, which may include an automated call to the mobile. A kind the
holder muted becomes skipped messages (visible in `notify list`), not silence. A number-addressed event
(an unfunded attempt) whose number has no holder goes to the number itself by SMS and call.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from holders.alerts import Prefs, prefs_of
from holders.sql.schema import holder_accounts, holder_low_balance, holders
from notify.model import CALL, CHANNELS, EMAIL, LOW_BALANCE, SMS, UNFUNDED_ATTEMPT, Event, Recipient


class HolderDirectory:
    """notify's RecipientDirectory from the holders' tables, read on the fan-out's connection."""

    def recipients(self, conn: Connection, event: Event) -> list[Recipient]:
        holder_id = event.holder_id or self._holder_of(conn, event)
        holder = None if not holder_id else conn.execute(
            select(holders).where(holders.c.holder_id == holder_id, holders.c.status != "closed")).first()
        if holder is None:
            if event.kind == UNFUNDED_ATTEMPT and event.number_e164:
                return [Recipient(ch, event.number_e164, event.language, event.time_zone)
                        for ch in (SMS, CALL)]
            return []
        prefs = prefs_of(conn, holder_id)
        wanted = self._channels(conn, event)
        off = frozenset(CHANNELS) if event.kind in prefs.muted_kinds else prefs.off_channels
        addresses = {SMS: holder.mobile_e164, EMAIL: holder.email, CALL: holder.mobile_e164}
        return [_person(ch, addresses[ch], holder.language, holder.time_zone, prefs, off)
                for ch in wanted if addresses[ch]]

    def _holder_of(self, conn: Connection, event: Event) -> str:
        a = holder_accounts.c
        if event.account_id:
            row = conn.execute(select(a.holder_id).where(a.account_id == event.account_id)).first()
        elif event.number_e164 and event.facility_id:
            row = conn.execute(select(a.holder_id).where(a.number_e164 == event.number_e164,
                                                         a.facility_id == event.facility_id)).first()
        else:
            row = None
        return "" if row is None else str(row[0])

    def _channels(self, conn: Connection, event: Event) -> tuple[str, ...]:
        if event.kind == LOW_BALANCE:
            row = conn.execute(select(holder_low_balance.c.channels)
                               .where(holder_low_balance.c.account_id == event.account_id)).first()
            return tuple(ch for ch in CHANNELS if row is not None and ch in row[0].split(","))
        return (SMS, EMAIL)


def _person(channel: str, address: str, language: str, time_zone: str, prefs: Prefs,
            off: frozenset[str]) -> Recipient:
    return Recipient(channel, address, language, time_zone, prefs.quiet_start, prefs.quiet_end, off)
