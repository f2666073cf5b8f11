"""Holders and their AdvancePay accounts: profile CRUD, claiming an account by proving control of its
number with a one-time code, and `verified`, which online funding and AutoReload will ask.

Rate limits are counted in SQL from `holder_codes`, under a lock on the holder row and (PostgreSQL) an
advisory lock on the number: the codes live there, so counting and issuing are one transaction, the
limits survive a Redis restart, and codes are issued at human rates, far below what SQL carries.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from holders import codes
from holders.access import Actor
from holders.errors import (
    AlreadyClaimed,
    BadInput,
    CodeRefused,
    NotActive,
    NotFound,
    RateLimited,
    Unavailable,
)
from holders.history import Event, events
from holders.ledgerport import AccountLedger
from holders.profile import (
    Holder,
    check_address,
    check_email,
    check_language,
    check_name,
    check_number,
    check_status,
    check_time_zone,
    email_key,
)
from holders.sender import CHANNELS, CodeSender
from holders.sql.schema import holder_accounts, holder_codes, holders
from ledger import Balance, LedgerError, UnknownAccount, account_id_for
from ledger.errors import BadId
from ledger.validate import check_id

log = structlog.get_logger()

CODE_TTL_MS = 10 * 60_000
MAX_WRONG = 5
PER_NUMBER_PER_HOUR = 3
PER_HOLDER_PER_DAY = 10


@dataclass(frozen=True)
class Link:
    account_id: str
    holder_id: str
    facility_id: str
    number: str
    verified_ts: int


def _holder(row: Any) -> Holder:
    return Holder(row.holder_id, row.name, row.email, row.mobile_e164, row.language, row.time_zone,
                  row.status, int(row.created_ts), int(row.updated_ts), row.address or "")


def _account(facility_id: object, number: object) -> tuple[str, str, str]:
    try:
        facility = check_id(facility_id, "facility id")
    except BadId as exc:
        raise BadInput(str(exc)) from None
    called = check_number(number, "called number")
    return facility, called, account_id_for(facility, called)


class Registry:
    def __init__(self, engine: Engine, *, secret: str, sender: CodeSender | None,
                 ledger: AccountLedger | None, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._secret = secret
        self._sender = sender
        self._ledger = ledger
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # --- profile -----------------------------------------------------------------------------------
    def create(self, actor: Actor, *, name: str, email: str, mobile: str, language: str = "en",
               time_zone: str = "America/Chicago", address: str | None = None) -> Holder:
        actor.check_support("create")
        now = self._now()
        row = {"holder_id": "h_" + secrets.token_hex(10), "name": check_name(name),
               "email": check_email(email), "email_key": email_key(email),
               "mobile_e164": check_number(mobile, "mobile"), "language": check_language(language),
               "time_zone": check_time_zone(time_zone), "status": "active",
               "address": None if address is None else check_address(address),
               "created_ts": now, "updated_ts": now}
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(holders).values(**row))
        except IntegrityError:
            raise BadInput(f"email already in use: {email}") from None
        log.info("holder_created", holder_id=row["holder_id"], by=actor.staff)
        return self.get(actor, str(row["holder_id"]))

    def get(self, actor: Actor, holder_id: str) -> Holder:
        actor.check(holder_id)
        with self._engine.connect() as conn:
            row = conn.execute(select(holders).where(holders.c.holder_id == holder_id)).first()
        if row is None:
            raise NotFound(f"no holder {holder_id}")
        return _holder(row)

    def update(self, actor: Actor, holder_id: str, *, name: str | None = None, email: str | None = None,
               mobile: str | None = None, language: str | None = None,
               time_zone: str | None = None, address: str | None = None) -> Holder:
        actor.check(holder_id)
        values: dict[str, object] = {}
        if name is not None:
            values["name"] = check_name(name)
        if email is not None:
            values.update(email=check_email(email), email_key=email_key(email))
        if mobile is not None:
            values["mobile_e164"] = check_number(mobile, "mobile")
        if language is not None:
            values["language"] = check_language(language)
        if time_zone is not None:
            values["time_zone"] = check_time_zone(time_zone)
        if address is not None:
            values["address"] = check_address(address)
        return self._write(holder_id, values)

    def set_status(self, actor: Actor, holder_id: str, status: str) -> Holder:
        """Lock, close or reactivate: support staff only (a holder cannot unlock itself)."""
        actor.check_support("set_status")
        return self._write(holder_id, {"status": check_status(status)})

    def _write(self, holder_id: str, values: dict[str, object]) -> Holder:
        try:
            with self._engine.begin() as conn:
                done = conn.execute(update(holders).where(holders.c.holder_id == holder_id)
                                    .values(**values, updated_ts=self._now())).rowcount
        except IntegrityError:
            raise BadInput(f"email already in use: {values.get('email')}") from None
        if not done:
            raise NotFound(f"no holder {holder_id}")
        with self._engine.connect() as conn:
            return _holder(conn.execute(select(holders).where(holders.c.holder_id == holder_id)).one())

    def find_by_email(self, actor: Actor, email: str) -> Holder | None:
        actor.check_support("find")
        with self._engine.connect() as conn:
            row = conn.execute(select(holders).where(holders.c.email_key == email_key(check_email(email)))
                               ).first()
        return _holder(row) if row else None

    def find_by_number(self, actor: Actor, number: str) -> list[Holder]:
        """Holders whose mobile is `number` or who hold an account for it, at any facility."""
        actor.check_support("find")
        number = check_number(number)
        linked = select(holder_accounts.c.holder_id).where(holder_accounts.c.number_e164 == number)
        with self._engine.connect() as conn:
            rows = conn.execute(select(holders).where(
                (holders.c.mobile_e164 == number) | holders.c.holder_id.in_(linked))
                .order_by(holders.c.created_ts)).all()
        return [_holder(r) for r in rows]

    # --- accounts ----------------------------------------------------------------------------------
    def accounts(self, actor: Actor, holder_id: str) -> list[Link]:
        self.get(actor, holder_id)
        with self._engine.connect() as conn:
            rows = conn.execute(select(holder_accounts).where(holder_accounts.c.holder_id == holder_id)
                                .order_by(holder_accounts.c.facility_id, holder_accounts.c.number_e164)).all()
        return [Link(r.account_id, r.holder_id, r.facility_id, r.number_e164, int(r.verified_ts))
                for r in rows]

    def balances(self, actor: Actor, holder_id: str) -> list[tuple[Link, Balance | None]]:
        """Each of the holder's accounts with its ledger balance (None: the ledger has no such account)."""
        if self._ledger is None:
            raise Unavailable("no ledger")
        out: list[tuple[Link, Balance | None]] = []
        for link in self.accounts(actor, holder_id):
            try:
                out.append((link, self._ledger.balance(link.account_id)))
            except UnknownAccount:
                out.append((link, None))
        return out

    def verified(self, actor: Actor, holder_id: str, account_id: str) -> bool:
        """True when this active holder proved control of the account's number: the gate for online
        funding and AutoReload."""
        actor.check(holder_id)
        with self._engine.connect() as conn:
            row = conn.execute(select(holder_accounts.c.verified_ts).select_from(
                holder_accounts.join(holders, holders.c.holder_id == holder_accounts.c.holder_id))
                .where(holder_accounts.c.account_id == account_id, holder_accounts.c.holder_id == holder_id,
                       holders.c.status == "active")).first()
        return row is not None

    def history(self, actor: Actor, holder_id: str, *, limit: int = 20, offset: int = 0) -> list[Event]:
        if not (1 <= limit <= 500) or offset < 0:
            raise BadInput("limit 1-500, offset >= 0")
        ids = [link.account_id for link in self.accounts(actor, holder_id)]
        with self._engine.connect() as conn:
            return events(conn, ids, limit=limit, offset=offset)

    # --- claiming ----------------------------------------------------------------------------------
    def _lock(self, conn: Connection, holder_id: str, number: str) -> Any:
        """The holder row FOR UPDATE, then the number (PostgreSQL advisory lock; SQLite's IMMEDIATE
        transaction already excludes other writers). Always in this order: no deadlock."""
        row = conn.execute(select(holders).where(holders.c.holder_id == holder_id).with_for_update()).first()
        if row is None:
            raise NotFound(f"no holder {holder_id}")
        if conn.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.blake2b(f"holders:{number}".encode(), digest_size=8).digest(),
                                 "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        return row

    def _owner(self, conn: Connection, account_id: str) -> str | None:
        return conn.execute(select(holder_accounts.c.holder_id)
                            .where(holder_accounts.c.account_id == account_id)).scalar()

    def claim(self, actor: Actor, holder_id: str, facility_id: str, number: str,
              channel: str = "sms") -> str:
        """Start proving control of `number`: a fresh code goes to it (older pending ones stop working).
        Returns the code id (not the code)."""
        actor.check(holder_id)
        facility, called, account_id = _account(facility_id, number)
        if channel not in CHANNELS:
            raise BadInput(f"channel: one of {', '.join(CHANNELS)}")
        secret = codes.check_secret(self._secret)
        if self._sender is None:
            raise Unavailable("no code sender configured (holder_code_sender)")
        if channel not in getattr(self._sender, "channels", CHANNELS):
            raise BadInput(f"channel {channel}: the configured code sender delivers only by "
                           f"{', '.join(getattr(self._sender, 'channels', CHANNELS))}")
        now = self._now()
        code, salt = codes.new_code(), codes.new_salt()
        code_id = "c_" + secrets.token_hex(10)
        with self._engine.begin() as conn:
            holder = self._lock(conn, holder_id, called)
            if holder.status != "active":
                raise NotActive(f"holder {holder_id} is {holder.status}")
            owner = self._owner(conn, account_id)
            if owner == holder_id:
                raise BadInput(f"{called} at {facility} is already verified for this holder")
            if owner is not None:
                raise AlreadyClaimed(f"{called} at {facility} belongs to another holder")
            per_number = conn.execute(select(func.count()).where(
                holder_codes.c.number_e164 == called,
                holder_codes.c.created_ts > now - 3_600_000)).scalar_one()
            if per_number >= PER_NUMBER_PER_HOUR:
                raise RateLimited(f"at most {PER_NUMBER_PER_HOUR} codes per number per hour")
            per_holder = conn.execute(select(func.count()).where(
                holder_codes.c.holder_id == holder_id,
                holder_codes.c.created_ts > now - 86_400_000)).scalar_one()
            if per_holder >= PER_HOLDER_PER_DAY:
                raise RateLimited(f"at most {PER_HOLDER_PER_DAY} codes per holder per day")
            conn.execute(update(holder_codes).where(
                holder_codes.c.holder_id == holder_id, holder_codes.c.account_id == account_id,
                holder_codes.c.status == "pending").values(status="superseded"))
            conn.execute(insert(holder_codes).values(
                code_id=code_id, holder_id=holder_id, account_id=account_id, facility_id=facility,
                number_e164=called, channel=channel, salt=salt,
                digest=codes.digest(secret, salt, code_id, code), status="pending", attempts=0,
                created_ts=now, expires_ts=now + CODE_TTL_MS, used_ts=None))
        try:
            self._sender.deliver(called, code, channel, holder.language)
        except Exception as exc:
            with self._engine.begin() as conn:
                conn.execute(update(holder_codes).where(holder_codes.c.code_id == code_id)
                             .values(status="failed"))
            log.warning("holder_code_undelivered", holder_id=holder_id, code_id=code_id,
                        error=type(exc).__name__)
            raise Unavailable(f"could not send the code to {called}") from None
        log.info("holder_code_sent", holder_id=holder_id, code_id=code_id, account_id=account_id,
                 channel=channel, by=actor.staff)
        return code_id

    def verify(self, actor: Actor, holder_id: str, facility_id: str, number: str, code: str) -> Link:
        """Check the newest pending code for this holder and number; on a match open the account in the
        ledger if it has none (op id from the code, so a retry replays) and link it. The first verified
        claim wins: the link's key is the account."""
        actor.check(holder_id)
        facility, called, account_id = _account(facility_id, number)
        if not isinstance(code, str) or len(code) != codes.DIGITS or not code.isascii() or not code.isdigit():
            raise BadInput(f"the code is {codes.DIGITS} digits")
        secret = codes.check_secret(self._secret)
        now = self._now()
        refused: CodeRefused | None = None
        try:
            with self._engine.begin() as conn:
                holder = self._lock(conn, holder_id, called)
                if holder.status != "active":
                    raise NotActive(f"holder {holder_id} is {holder.status}")
                owner = self._owner(conn, account_id)
                if owner is not None:
                    if owner == holder_id:
                        raise BadInput(f"{called} at {facility} is already verified for this holder")
                    raise AlreadyClaimed(f"{called} at {facility} belongs to another holder")
                row = conn.execute(select(holder_codes).where(
                    holder_codes.c.holder_id == holder_id, holder_codes.c.account_id == account_id,
                    holder_codes.c.status == "pending").order_by(holder_codes.c.created_ts.desc())
                    .limit(1).with_for_update()).first()
                if row is None:
                    raise CodeRefused("no code pending: ask for a new one")
                if now >= row.expires_ts:
                    conn.execute(update(holder_codes).where(holder_codes.c.code_id == row.code_id)
                                 .values(status="expired"))
                    refused = CodeRefused("the code has expired: ask for a new one")
                elif not codes.matches(secret, row.salt, row.code_id, code, row.digest):
                    wrong = row.attempts + 1
                    conn.execute(update(holder_codes).where(holder_codes.c.code_id == row.code_id).values(
                        attempts=wrong, status="locked" if wrong >= MAX_WRONG else "pending"))
                    refused = CodeRefused("wrong code" + (": too many tries, ask for a new one"
                                                          if wrong >= MAX_WRONG else ""))
                else:
                    self._open(row.code_id, facility, called)
                    conn.execute(update(holder_codes).where(holder_codes.c.code_id == row.code_id)
                                 .values(status="used", used_ts=now))
                    conn.execute(insert(holder_accounts).values(
                        account_id=account_id, holder_id=holder_id, facility_id=facility,
                        number_e164=called, verified_ts=now))
        except IntegrityError:
            raise AlreadyClaimed(f"{called} at {facility} belongs to another holder") from None
        if refused is not None:      # raised after the commit: the attempt is counted
            log.info("holder_code_refused", holder_id=holder_id, account_id=account_id, reason=str(refused))
            raise refused
        log.info("holder_account_verified", holder_id=holder_id, account_id=account_id, by=actor.staff)
        return Link(account_id, holder_id, facility, called, now)

    def _open(self, code_id: str, facility: str, number: str) -> None:
        """An account the 800 line never opened is opened now; a closed one is left closed (find_account
        sees it), reopening is the ledger operator's call."""
        if self._ledger is None:
            raise Unavailable("no ledger")
        try:
            if self._ledger.find_account(facility, number) is None:
                self._ledger.open_account(f"holders-claim-{code_id}", facility, number)
        except LedgerError as exc:
            raise Unavailable(f"ledger: {exc.code}: {exc}") from None
