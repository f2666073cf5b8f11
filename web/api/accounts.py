"""Accounts: claim one for a facility and number (a code to the number), verify it, read its balance and
paged statement, block or unblock the facility or one of its inmates for it, and deposit by stored or new
card.

Every account route first finds the account among the acting holder's verified links: anyone else's
account, or one that does not exist, is the same 404."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from sqlalchemy import select

from holders import Actor, Link
from holders.history import events
from ledger import UnknownAccount
from payments.gateway import Declined, PaymentError
from payments.methods import MAX_KEY
from payments.sql import charges
from payments.stored_charge import StoredChargeOrder
from web import alerting
from web.auth import Session
from web.deps import current, services
from web.problems import ApiProblem, responses
from web.schemas import (
    Account,
    BalanceOut,
    Block,
    BlockOut,
    Blocks,
    Claim,
    DepositIn,
    Money,
    Notice,
    Receipt,
    Statement,
    StatementItem,
    Verify,
)
from web.services import Services

router = APIRouter(tags=["accounts"])
Svc = Annotated[Services, Depends(services)]
Me = Annotated[Session, Depends(current)]
NOT_YOURS = "there is no such account among yours"


async def owned(svc: Services, me: Session, account_id: str) -> Link:
    """The holder's verified link to `account_id`, or 404 (also for another holder's account)."""
    links = await asyncio.to_thread(svc.registry.accounts, Actor.holder(me.holder_id), me.holder_id)
    link = next((x for x in links if x.account_id == account_id), None)
    if link is None:
        raise ApiProblem(404, NOT_YOURS)
    return link


async def _account(svc: Services, link: Link) -> Account:
    try:
        bal = await svc.ledger.balance(link.account_id)
        balance: BalanceOut | None = BalanceOut(posted=Money.of(bal.posted), held=Money.of(bal.held),
                                                available=Money.of(bal.available), state=bal.state)
    except UnknownAccount:
        balance = None
    blocked = await svc.ledger.is_blocked(link.facility_id, link.number)
    return Account(account_id=link.account_id, facility_id=link.facility_id, number=link.number,
                   verified_ts=link.verified_ts, balance=balance, blocked=blocked)


@router.get("/accounts", response_model=list[Account], responses=responses(401, 503),
            summary="The holder's verified accounts with their balances")
async def list_accounts(me: Me, svc: Svc) -> list[Account]:
    links = await asyncio.to_thread(svc.registry.accounts, Actor.holder(me.holder_id), me.holder_id)
    return [await _account(svc, link) for link in links]


@router.post("/accounts", status_code=202, response_model=Notice,
             responses=responses(400, 401, 403, 409, 422, 429, 503),
             summary="Claim the account of a facility and number: a code goes to the number")
async def claim(body: Claim, me: Me, svc: Svc) -> Notice:
    await facility_known(svc, body.facility_id)
    await asyncio.to_thread(svc.registry.claim, Actor.holder(me.holder_id), me.holder_id, body.facility_id,
                            body.number, body.channel)
    how = "a text message" if body.channel == "sms" else "a call"
    return Notice(status="code_sent", detail=f"we sent a 6-digit code to {body.number} by {how}")


@router.post("/accounts/verify", status_code=201, response_model=Account,
             responses=responses(400, 401, 403, 409, 422, 503),
             summary="Prove control of the number with its code: the account becomes the holder's")
async def verify(body: Verify, me: Me, svc: Svc) -> Account:
    await facility_known(svc, body.facility_id)
    link = await asyncio.to_thread(svc.registry.verify, Actor.holder(me.holder_id), me.holder_id,
                                   body.facility_id, body.number, body.code)
    await asyncio.to_thread(alerting.newly_verified, svc.engine, svc.auth, me.holder_id, link.account_id)
    return await _account(svc, link)


async def facility_known(svc: Services, facility_id: str) -> None:
    if facility_id not in {f.id for f in svc.catalog.facilities}:
        raise ApiProblem(400, f"there is no facility {facility_id[:40]!r}")


@router.get("/accounts/{account_id}", response_model=Account, responses=responses(401, 404, 503),
            summary="One account: balance posted/held/available and whether it is blocked")
async def get_account(account_id: str, me: Me, svc: Svc) -> Account:
    return await _account(svc, await owned(svc, me, account_id))


@router.get("/accounts/{account_id}/statement", response_model=Statement,
            responses=responses(401, 404, 422, 503), summary="Calls and deposits, newest first, paged")
async def statement(account_id: str, me: Me, svc: Svc,
                    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
                    limit: Annotated[int, Query(ge=1, le=200)] = 20) -> Statement:
    link = await owned(svc, me, account_id)
    await asyncio.to_thread(svc.drain_journal)

    def read() -> list[StatementItem]:
        with svc.engine.connect() as conn:
            found = events(conn, [link.account_id], limit=limit, offset=(page - 1) * limit)
        return [StatementItem(ts_ms=e.ts_ms, kind=e.kind, amount=Money.of(e.amount), detail=e.detail)
                for e in found]
    return Statement(account_id=link.account_id, page=page, limit=limit, items=await asyncio.to_thread(read))


@router.put("/accounts/{account_id}/block", response_model=BlockOut,
            responses=responses(401, 403, 404, 422, 503),
            summary="Block or unblock calls to the account's number from its facility or one inmate there")
async def block(account_id: str, body: Block, me: Me, svc: Svc) -> BlockOut:
    link = await owned(svc, me, account_id)
    await svc.ledger.set_block(f"web-block-{secrets.token_hex(10)}", link.facility_id, link.number,
                               body.blocked, source=f"holder-{me.holder_id}", inmate_id=body.inmate_id or "")
    return BlockOut(account_id=link.account_id, blocked=body.blocked, inmate_id=body.inmate_id)


@router.get("/accounts/{account_id}/blocks", response_model=Blocks, responses=responses(401, 404, 503),
            summary="What is blocked for the account's number: the whole facility, and inmates one by one")
async def blocks(account_id: str, me: Me, svc: Svc) -> Blocks:
    link = await owned(svc, me, account_id)
    facility, inmates = await asyncio.gather(svc.ledger.is_blocked(link.facility_id, link.number),
                                             svc.ledger.blocked_inmates(link.facility_id, link.number))
    return Blocks(account_id=link.account_id, facility=facility, inmates=sorted(inmates))


# --- deposits ------------------------------------------------------------------------------------------
def charge_key(holder_id: str, idem: str) -> str:
    """The stored charge's key: the client's Idempotency-Key within this holder (two holders' keys never
    meet), hashed to a fixed length."""
    return "web-" + hashlib.sha256(f"{holder_id}\n{idem}".encode()).hexdigest()[:40]


@router.post("/accounts/{account_id}/deposits", status_code=201, response_model=Receipt,
             responses=responses(400, 401, 402, 403, 404, 409, 422, 503),
             summary="Deposit by stored or new card; the same Idempotency-Key gives the same receipt")
async def deposit(account_id: str, body: DepositIn, me: Me, svc: Svc,
                  idempotency_key: Annotated[str, Header(min_length=8, max_length=MAX_KEY,
                                                         pattern="^[\\x21-\\x7e]+$")]) -> Receipt:
    link = await owned(svc, me, account_id)
    if svc.charges is None or svc.methods is None:
        raise ApiProblem(503, "card payments are not available right now")
    cfg = svc.config
    if not cfg.deposit_min_cents <= body.amount_cents <= cfg.deposit_max_cents:
        raise ApiProblem(400, f"the amount must be between {Money.of(cfg.deposit_min_cents).formatted} and "
                              f"{Money.of(cfg.deposit_max_cents).formatted}")
    if (body.method_id is None) == (body.card is None):
        raise ApiProblem(400, "give either a stored card (method_id) or a new card, not both")
    key = charge_key(me.holder_id, idempotency_key)
    method_id = body.method_id
    if body.card is not None:
        try:
            method = await svc.methods.add(me.holder_id, f"{key}:card", body.card.number, body.card.mmyy,
                                           body.card.cvv)
        except Declined as exc:
            raise ApiProblem(402, f"the card was refused ({exc.reason}): check the number, expiry and "
                                  "security code") from None
        except PaymentError:
            raise ApiProblem(503, "the card processor did not answer: try again with the same "
                                  "Idempotency-Key") from None
        method_id = method.method_id
    assert method_id is not None
    order = StoredChargeOrder(key, me.holder_id, method_id, link.account_id, body.amount_cents)
    outcome = await svc.charges.charge(order)
    if outcome.status == "posted":
        return await _receipt(svc, key, link.account_id)
    if outcome.status == "declined":
        raise ApiProblem(402, f"the card was declined ({outcome.reason}): nothing was charged")
    if outcome.status == "unknown":
        raise ApiProblem(503, "we could not confirm the payment yet: send the same request again with the "
                              "same Idempotency-Key (you will not be charged twice)")
    if outcome.reason == "idempotency_conflict":
        raise ApiProblem(409, "this Idempotency-Key was already used for a different deposit")
    if outcome.reason == "no_such_method":
        raise ApiProblem(404, "there is no such payment method among yours")
    refunded = " and the charge was refunded" if outcome.refunded else ""
    raise ApiProblem(409, f"the deposit could not be credited ({outcome.reason}){refunded}")


async def _receipt(svc: Services, key: str, account_id: str) -> Receipt:
    def read() -> Receipt:
        with svc.engine.connect() as conn:
            row = conn.execute(select(charges).where(charges.c.key == key)).mappings().one()
        return Receipt(receipt_id=row["charge_id"], account_id=account_id,
                       amount=Money.of(int(row["amount_cents"])), method_id=row["method_id"],
                       status="posted", created_ts=int(row["created_at"] * 1000))
    return await asyncio.to_thread(read)
