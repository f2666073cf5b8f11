"""The alert settings a family sees and changes on the web are the holders' own (holders/alerts.py), the
ones derive_low_balance and notify's HolderDirectory act on:

* quiet hours, the SMS and email switches and muted kinds -> `Alerts.set_prefs` (holder_alert_prefs);
* the low-balance amount -> `Alerts.set_low_balance` on every account the holder has verified, by the
  account's channels (SMS and email when it had none); the switches above still silence a channel.
  The amount is also kept in web_logins.low_balance_cents and given to accounts verified later.

Reading back: the newest account threshold (or, with no account yet, the one for accounts to come).
Blocking SQL: call from a worker thread."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, select

from holders import Actor, Registry
from holders.alerts import Alerts, Prefs
from holders.sql.schema import holder_accounts, holder_low_balance
from notify.model import EMAIL, SMS
from web.auth import Auth

DEFAULT_CHANNELS = (SMS, EMAIL)


@dataclass(frozen=True)
class Settings:
    prefs: Prefs
    low_balance_cents: int           # what the page shows: the newest account threshold, else the default
    thresholds: dict[str, int]       # account id -> its threshold (accounts with one)


def thresholds(engine: Engine, holder_id: str) -> dict[str, int]:
    """The holder's accounts' thresholds, oldest change first (so the last is the newest)."""
    t, a = holder_low_balance, holder_accounts
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.account_id, t.c.threshold_cents)
                            .join(a, (a.c.account_id == t.c.account_id) & (a.c.holder_id == t.c.holder_id))
                            .where(t.c.holder_id == holder_id).order_by(t.c.updated_ts)).all()
    return {str(r.account_id): int(r.threshold_cents) for r in rows}


def read(engine: Engine, auth: Auth, holder_id: str) -> Settings:
    prefs = Alerts(engine).prefs(Actor.holder(holder_id), holder_id)
    per_account = thresholds(engine, holder_id)
    low = list(per_account.values())[-1] if per_account else auth.low_balance_default(holder_id)
    return Settings(prefs, low, per_account)


def write(engine: Engine, auth: Auth, registry: Registry, holder_id: str, *,
          quiet: tuple[int, int] | None = None, sms: bool | None = None, email: bool | None = None,
          muted_kinds: Iterable[str] | None = None, low_balance_cents: int | None = None) -> None:
    actor, alerts = Actor.holder(holder_id), Alerts(engine)
    if quiet is not None or sms is not None or email is not None or muted_kinds is not None:
        off = set(alerts.prefs(actor, holder_id).off_channels)
        for channel, on in ((SMS, sms), (EMAIL, email)):
            if on is not None:
                (off.discard if on else off.add)(channel)
        alerts.set_prefs(actor, holder_id, quiet_start=None if quiet is None else quiet[0],
                         quiet_end=None if quiet is None else quiet[1], off_channels=sorted(off),
                         muted_kinds=None if muted_kinds is None else list(muted_kinds))
    if low_balance_cents is not None:
        for link in registry.accounts(actor, holder_id):
            apply(alerts, holder_id, link.account_id, low_balance_cents)
        auth.set_low_balance_default(holder_id, low_balance_cents)


def apply(alerts: Alerts, holder_id: str, account_id: str, cents: int) -> None:
    """Set one account's threshold, keeping its channels. Unchanged: left alone, so a crossing already
    under way is not forgotten (set_low_balance counts crossings from the moment it is called)."""
    actor = Actor.holder(holder_id)
    old = alerts.low_balance(actor, holder_id, account_id)
    if old is not None and old.threshold_cents == cents:
        return
    channels = old.channels if old is not None and old.channels else DEFAULT_CHANNELS
    alerts.set_low_balance(actor, holder_id, account_id, cents, channels)


def newly_verified(engine: Engine, auth: Auth, holder_id: str, account_id: str) -> None:
    """An account the holder just verified gets the holder's threshold, unless it already has one."""
    alerts = Alerts(engine)
    if alerts.low_balance(Actor.holder(holder_id), holder_id, account_id) is None:
        cents = auth.low_balance_default(holder_id)
        if cents:
            apply(alerts, holder_id, account_id, cents)
