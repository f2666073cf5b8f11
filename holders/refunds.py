"""Refunding an account's available balance: back to the cards it came from, newest deposit first, the
rest owed by check. Idempotent end to end by the request id.

Steps, each recorded in `holder_refunds` / `holder_refund_parts` or replayed by an op id:

1. **begin**: the request row (`started`, `in_flight` = the account: one refund at a time per account).
2. **freeze** the account (`<id>:freeze`): no hold, capture or deposit from now on; a call still running
   may settle, which only releases money.
3. **plan** (journal synced to SQL first): the available balance, traced to its deposits newest first;
   each card deposit takes at most what its charge can still give back (the deposit minus earlier refund
   parts on that charge); what cannot go to a card is a `check` part. Written in one transaction.
4. **ledger refund** of the whole amount, once (`<id>:refund`): the money leaves the account before any
   of it goes out, so a refused ledger refund never sends money anywhere (the plan is dropped and redone).
5. **card refunds**, part by part, under gateway key `<id>:<seq>`: the processor replays a key, so a crash
   after it refunded and before the part was marked refunds nothing twice. A refusal makes the part owed
   by check; an outcome that stays unknown stops the run (re-run: the same key resolves it).
6. **finish**: close the account (`<id>:close`) or unfreeze it (`<id>:unfreeze`, unless it was frozen
   before), then `done`. The ledger refund journals one `refund` transfer: notify turns it into one
   "refund issued" message (notify/journal.py, deduplicated by its op id).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from holders.access import Actor
from holders.errors import BadInput, NotFound, Unavailable
from holders.sql.schema import holder_accounts, holder_refund_parts, holder_refunds, holders
from ledger import AccountNotActive, Ledger, LedgerError, UnknownAccount
from ledger.sql.schema import transfers
from payments.gateway import GatewayError, PaymentError, PaymentGateway
from payments.sql import charges, methods

log = structlog.get_logger("holders.refunds")

CARD_SOURCES = frozenset({"ivr-card", "stored-card"})     # ledger deposit sources that name a gateway charge
CARD_REFUND_DAYS = 180           # Authorize.Net refunds a settled transaction for 180 days
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


class RefundInFlight(BadInput):
    """Another refund request for this account is not finished yet."""
    code = "refund_in_flight"


@dataclass(frozen=True)
class Target:
    """The account refunded; `owner` (the ledger's owner text) names the payee when no holder has it."""
    account_id: str
    facility_id: str
    number: str
    holder_id: str | None
    owner: str = ""


@dataclass(frozen=True)
class Part:
    seq: int
    method: str          # card | check
    amount: int
    state: str           # pending | refunded | owed
    charge_id: str
    reason: str


@dataclass(frozen=True)
class RefundResult:
    request_id: str
    account_id: str
    state: str           # done; waiting (calls still hold money), unknown, replanned: re-run
    amount: int
    parts: tuple[Part, ...]

    @property
    def to_cards(self) -> int:
        return sum(p.amount for p in self.parts if p.state == "refunded")

    @property
    def by_check(self) -> int:
        return sum(p.amount for p in self.parts if p.state == "owed")


def check_request_id(value: object) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise BadInput("request id: 1-100 of A-Z a-z 0-9 . _ -")
    return value


class Refunds:
    """Runs refund requests. `ledger` is the asyncio Ledger; `sync` brings its SQL copy up to date (the
    plan reads deposits there); `checkpoint(step)` is where tests crash."""

    def __init__(self, engine: Engine, ledger: Ledger, gateway: PaymentGateway | None, *,
                 sync: Callable[[], Awaitable[None] | None], clock: Callable[[], float] = time.time,
                 card_refund_days: int = CARD_REFUND_DAYS, tries: int = 3,
                 checkpoint: Callable[[str], None] | None = None) -> None:
        self._engine, self._ledger, self._gateway = engine, ledger, gateway
        self._sync, self._clock = sync, clock
        self._card_days, self._tries = card_refund_days, tries
        self._cp = checkpoint or (lambda step: None)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # --- the public entry points ---------------------------------------------------------------------
    async def request(self, actor: Actor, holder_id: str, account_id: str, request_id: str, *,
                      close: bool = False) -> RefundResult:
        """A holder (for itself) or support staff (for anyone) asks for the account's available balance
        back; `close` closes the account afterwards. Another holder's account is NotFound."""
        actor.check(holder_id)
        rid = check_request_id(request_id)
        with self._engine.connect() as conn:
            link = conn.execute(select(holder_accounts).where(
                holder_accounts.c.account_id == account_id, holder_accounts.c.holder_id == holder_id)).first()
        if link is None:
            raise NotFound(f"no account {account_id} for holder {holder_id}")
        return await self.run(rid, Target(account_id, link.facility_id, link.number_e164, holder_id),
                              close=close, reason="support" if actor.is_support else "holder",
                              by=actor.staff or holder_id)

    async def run(self, request_id: str, target: Target, *, close: bool, reason: str,
                  by: str) -> RefundResult:
        """Start or resume the request (the inactivity sweep calls this for unclaimed accounts too).
        State `replanned`: the ledger refused the refund (the balance changed), nothing went out; re-run."""
        account_id = target.account_id
        row = await self._begin(check_request_id(request_id), target, close, reason, by)
        rid = row.request_id
        if row.state == "done":
            return self._result(rid, "done")
        if not row.was_frozen:
            await self._ledger.freeze(f"{rid}:freeze", account_id, reason=f"refund {rid}")
        self._cp("frozen")
        if row.state == "started":
            if not await self._plan(rid, account_id, bool(row.close)):
                return self._result(rid, "waiting")
            self._cp("planned")
        row = self._row(rid)
        if row.state == "planned":
            if not await self._ledger_refund(rid, account_id, int(row.amount_cents)):
                return self._result(rid, "replanned")
            self._cp("ledger_refunded")
        for part in self._parts(rid):
            if part.state == "pending" and part.method == "card":
                if not await self._card(rid, part):
                    return self._result(rid, "unknown")
                self._cp(f"card_refunded:{part.seq}")
        self._cp("finishing")
        if row.close:
            await self._ledger.close_account(f"{rid}:close", account_id, reason=f"refund {rid}")
        elif not row.was_frozen:
            await self._ledger.unfreeze(f"{rid}:unfreeze", account_id)
        self._set(rid, state="done", in_flight=None, done_ts=self._now())
        result = self._result(rid, "done")
        log.info("refund_done", request_id=rid, account_id=account_id, amount=result.amount,
                 to_cards=result.to_cards, by_check=result.by_check, closed=bool(row.close))
        return result

    # --- steps ---------------------------------------------------------------------------------------
    async def _begin(self, rid: str, target: Target, close: bool, reason: str, by: str) -> Any:
        account_id, holder_id = target.account_id, target.holder_id
        existing = self._find(rid)
        if existing is not None:
            if (existing.account_id, existing.holder_id, bool(existing.close)) != (
                    account_id, holder_id, close):
                raise BadInput(f"request id {rid} was used for another refund")
            return existing
        try:
            bal = await self._ledger.balance(account_id)
        except UnknownAccount:
            raise NotFound(f"no account {account_id}") from None
        if bal.state == "closed":
            raise BadInput(f"account {account_id} is closed")
        now = self._now()
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(holder_refunds).values(
                    request_id=rid, account_id=account_id, holder_id=holder_id,
                    facility_id=target.facility_id, number_e164=target.number, close=close, reason=reason,
                    requested_by=by[:200], state="started",
                    in_flight=account_id, was_frozen=bal.state == "frozen", amount_cents=0,
                    payee_name=target.owner[:200], payee_address="", created_ts=now, updated_ts=now))
        except IntegrityError:
            if self._find(rid) is not None:       # the same request, started at the same moment
                return await self._begin(rid, target, close, reason, by)
            raise RefundInFlight(f"a refund of {account_id} is already in progress") from None
        log.info("refund_requested", request_id=rid, account_id=account_id, close=close, reason=reason, by=by)
        return self._row(rid)

    async def _plan(self, rid: str, account_id: str, close: bool) -> bool:
        """Trace the available balance to deposits and write the parts; False while calls still hold
        money on an account being closed (it cannot close until they settle)."""
        bal = await self._ledger.balance(account_id)
        if close and bal.held:
            log.info("refund_waiting_for_calls", request_id=rid, account_id=account_id, held=bal.held)
            return False
        done = self._sync()
        if done is not None:
            await done
        now = self._now()
        with self._engine.begin() as conn:
            req = conn.execute(select(holder_refunds).where(holder_refunds.c.request_id == rid)
                               .with_for_update()).one()
            if req.state != "started":
                return True
            parts = self._trace(conn, rid, account_id, bal.available, now)
            name, address = self._payee(conn, req.holder_id, req.payee_name)
            for i, (method, amount, deposit_op, charge_id, why) in enumerate(parts, start=1):
                conn.execute(insert(holder_refund_parts).values(
                    request_id=rid, seq=i, account_id=account_id, deposit_op=deposit_op, charge_id=charge_id,
                    method=method, amount_cents=amount, state="pending" if method == "card" else "owed",
                    gateway_refund_id="", reason=why, updated_ts=now))
            conn.execute(update(holder_refunds).where(holder_refunds.c.request_id == rid).values(
                state="planned", amount_cents=bal.available, payee_name=name, payee_address=address,
                updated_ts=now))
        return True

    def _payee(self, conn: Connection, holder_id: str | None, owner: str) -> tuple[str, str]:
        if holder_id is None:
            return owner[:200], ""
        h = conn.execute(select(holders.c.name, holders.c.address)
                         .where(holders.c.holder_id == holder_id)).one()
        return str(h.name), str(h.address or "")

    def _trace(self, conn: Connection, rid: str, account_id: str, amount: int,
               now: int) -> list[tuple[str, int, str, str, str]]:
        """(method, cents, deposit op, charge id, why by check) newest deposit first."""
        deposits = conn.execute(select(transfers.c.op_id, transfers.c.amount, transfers.c.note,
                                       transfers.c.reference, transfers.c.ts)
                                .where(transfers.c.account_id == account_id, transfers.c.kind == "deposit")
                                .order_by(transfers.c.ts.desc(), transfers.c.ver.desc())).all()
        refs = [str(d.reference) for d in deposits if d.reference]
        given: dict[str, int] = {}
        if refs:
            given = {str(c): int(s) for c, s in conn.execute(
                select(holder_refund_parts.c.charge_id, func.sum(holder_refund_parts.c.amount_cents))
                .where(holder_refund_parts.c.charge_id.in_(refs), holder_refund_parts.c.method == "card",
                       holder_refund_parts.c.state != "owed", holder_refund_parts.c.request_id != rid)
                .group_by(holder_refund_parts.c.charge_id))}
        out: list[tuple[str, int, str, str, str]] = []
        left = amount
        for d in deposits:
            if left <= 0:
                break
            charge = str(d.reference or "")
            take = min(left, int(d.amount) - given.get(charge, 0))
            if take <= 0:
                continue
            why = self._why_not_card(conn, d, now)
            out.append(("check" if why else "card", take, str(d.op_id), "" if why else charge, why))
            left -= take
        if left > 0:
            out.append(("check", left, "", "", "no_deposit"))
        return out

    def _why_not_card(self, conn: Connection, d: Any, now: int) -> str:
        if d.note not in CARD_SOURCES or not d.reference:
            return "not_a_card"
        if self._gateway is None:
            return "no_gateway"
        if now - int(d.ts) > self._card_days * 86_400_000:
            return "too_old"
        if d.note == "stored-card":
            exp = conn.execute(select(methods.c.exp_month, methods.c.exp_year).select_from(
                charges.join(methods, methods.c.method_id == charges.c.method_id))
                .where(charges.c.charge_id == d.reference)).first()
            today = datetime.fromtimestamp(now / 1000, UTC)
            if exp is not None and (int(exp.exp_year), int(exp.exp_month)) < (today.year, today.month):
                return "expired_card"
        return ""

    async def _ledger_refund(self, rid: str, account_id: str, amount: int) -> bool:
        """The money leaves the account in one operation. False: the ledger refused it (nothing left the
        account, nothing went out): the plan is dropped so that the next pass traces the balance anew."""
        if amount > 0:
            try:
                await self._ledger.refund(f"{rid}:refund", account_id, amount, reason=f"refund {rid}")
            except LedgerError as exc:
                if exc.transient or isinstance(exc, AccountNotActive):
                    raise
                log.warning("refund_replanned", request_id=rid, error=exc.code)
                with self._engine.begin() as conn:
                    conn.execute(delete(holder_refund_parts).where(holder_refund_parts.c.request_id == rid))
                    conn.execute(update(holder_refunds).where(holder_refunds.c.request_id == rid)
                                 .values(state="started", updated_ts=self._now()))
                return False
        self._set(rid, state="ledgered")
        return True

    async def _card(self, rid: str, part: Part) -> bool:
        """One card part; False when the processor's answer stays unknown (the part stays pending)."""
        assert self._gateway is not None        # a plan has no card part without a gateway
        key = f"{rid}:{part.seq}"
        for attempt in range(self._tries):
            try:
                got = await self._gateway.refund(key, part.charge_id, part.amount)
                self._set_part(rid, part.seq, state="refunded", gateway_refund_id=str(got.refund_id)[:64])
                return True
            except GatewayError:
                if attempt + 1 == self._tries:
                    break
            except PaymentError as exc:          # declined, too old, closed card: owed by check
                why = getattr(exc, "reason", "") or type(exc).__name__
                self._set_part(rid, part.seq, state="owed", method="check", reason=f"refused:{why}"[:64])
                log.info("refund_card_refused", request_id=rid, seq=part.seq, reason=why)
                return True
        try:
            found = await self._gateway.lookup(key)
        except GatewayError:
            found = None
        if found is not None and found.kind == "refund" and found.status == "approved":
            self._set_part(rid, part.seq, state="refunded", gateway_refund_id=found.txn_id[:64])
            return True
        log.error("refund_card_unknown", request_id=rid, seq=part.seq)
        return False

    # --- rows ----------------------------------------------------------------------------------------
    def _find(self, rid: str) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(select(holder_refunds).where(holder_refunds.c.request_id == rid)).first()

    def _row(self, rid: str) -> Any:
        row = self._find(rid)
        if row is None:
            raise Unavailable(f"refund {rid} vanished")
        return row

    def _parts(self, rid: str) -> list[Part]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(holder_refund_parts).where(holder_refund_parts.c.request_id == rid)
                                .order_by(holder_refund_parts.c.seq)).all()
        return [Part(int(r.seq), r.method, int(r.amount_cents), r.state, r.charge_id, r.reason) for r in rows]

    def _result(self, rid: str, state: str) -> RefundResult:
        row = self._row(rid)
        return RefundResult(rid, row.account_id, state, int(row.amount_cents), tuple(self._parts(rid)))

    def _set(self, rid: str, **values: object) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(holder_refunds).where(holder_refunds.c.request_id == rid)
                         .values(**values, updated_ts=self._now()))

    def _set_part(self, rid: str, seq: int, **values: object) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(holder_refund_parts).where(holder_refund_parts.c.request_id == rid,
                                                           holder_refund_parts.c.seq == seq)
                         .values(**values, updated_ts=self._now()))


@dataclass(frozen=True)
class Owed:
    request_id: str
    seq: int
    account_id: str
    facility_id: str
    number: str
    payee_name: str
    payee_address: str
    amount: int
    reason: str
    since_ts: int


def owed(engine: Engine) -> list[Owed]:
    """Every part owed by check, oldest first: what operators mail."""
    r, p = holder_refunds.c, holder_refund_parts.c
    with engine.connect() as conn:
        rows = conn.execute(select(r.request_id, p.seq, r.account_id, r.facility_id, r.number_e164,
                                   r.payee_name, r.payee_address, p.amount_cents, p.reason, p.updated_ts)
                            .join(holder_refund_parts, p.request_id == r.request_id)
                            .where(p.state == "owed", r.state.in_(("ledgered", "done")))
                            .order_by(p.updated_ts, r.request_id, p.seq)).all()
    return [Owed(x.request_id, int(x.seq), x.account_id, x.facility_id, x.number_e164, x.payee_name,
                 x.payee_address, int(x.amount_cents), x.reason, int(x.updated_ts)) for x in rows]

