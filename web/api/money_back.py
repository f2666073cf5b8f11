"""AutoReload settings and refund requests of an account, through holders' AutoReload and Refunds (which
check the holder's link themselves; another holder's account is 404 like everywhere)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from holders import Actor
from holders.autoreload import AutoReload, Limits
from holders.autoreload import Settings as Reload
from holders.refunds import Refunds
from payments.methods import MAX_KEY
from web.api.accounts import owned
from web.auth import Session
from web.deps import current, services
from web.problems import ApiProblem, responses
from web.schemas import Money, Strict
from web.services import Services

router = APIRouter(tags=["accounts"])
Svc = Annotated[Services, Depends(services)]
Me = Annotated[Session, Depends(current)]


class ReloadIn(Strict):
    threshold_cents: int = Field(ge=1, le=10**9)
    amount_cents: int = Field(ge=1, le=10**9)
    method_id: str = Field(min_length=1, max_length=40)


class ReloadOut(BaseModel):
    enabled: bool
    threshold: Money
    amount: Money
    method_id: str
    off_reason: str


class RefundOut(BaseModel):
    request_id: str
    state: str               # done; waiting, unknown, replanned: send the same request again
    amount: Money
    to_cards: Money
    by_check: Money


def _reload(svc: Services) -> AutoReload:
    cfg = svc.config
    return AutoReload(svc.engine, Limits(cfg.deposit_min_cents, cfg.deposit_max_cents))


def _out(s: Reload | None) -> ReloadOut:
    if s is None:
        return ReloadOut(enabled=False, threshold=Money.of(0), amount=Money.of(0), method_id="",
                         off_reason="")
    return ReloadOut(enabled=s.enabled, threshold=Money.of(s.threshold_cents),
                     amount=Money.of(s.amount_cents), method_id=s.method_id, off_reason=s.off_reason)


@router.get("/accounts/{account_id}/autoreload", response_model=ReloadOut, responses=responses(401, 404),
            summary="The account's AutoReload settings")
async def show(account_id: str, me: Me, svc: Svc) -> ReloadOut:
    await owned(svc, me, account_id)
    return _out(await asyncio.to_thread(_reload(svc).show, Actor.holder(me.holder_id), me.holder_id,
                                        account_id))


@router.put("/accounts/{account_id}/autoreload", response_model=ReloadOut,
            responses=responses(400, 401, 403, 404, 422), summary="Switch AutoReload on or change it")
async def switch_on(account_id: str, body: ReloadIn, me: Me, svc: Svc) -> ReloadOut:
    await owned(svc, me, account_id)
    return _out(await asyncio.to_thread(lambda: _reload(svc).set(
        Actor.holder(me.holder_id), me.holder_id, account_id, threshold_cents=body.threshold_cents,
        amount_cents=body.amount_cents, method_id=body.method_id)))


@router.delete("/accounts/{account_id}/autoreload", response_model=ReloadOut,
               responses=responses(401, 403, 404), summary="Switch AutoReload off")
async def switch_off(account_id: str, me: Me, svc: Svc) -> ReloadOut:
    await owned(svc, me, account_id)
    return _out(await asyncio.to_thread(_reload(svc).off, Actor.holder(me.holder_id), me.holder_id,
                                        account_id, "holder"))


@router.post("/accounts/{account_id}/refunds", response_model=RefundOut,
             responses=responses(400, 401, 403, 404, 422, 503),
             summary="Ask for the available balance back (to the cards, the rest by check)")
async def refund(account_id: str, me: Me, svc: Svc,
                 idempotency_key: Annotated[str, Header(min_length=8, max_length=MAX_KEY,
                                                        pattern="^[\\x21-\\x7e]+$")]) -> RefundOut:
    await owned(svc, me, account_id)
    if svc.methods is None:
        raise ApiProblem(503, "refunds are not available right now")
    refunds = Refunds(svc.engine, svc.ledger, svc.methods.gateway,
                      sync=lambda: asyncio.to_thread(svc.drain_journal))
    rid = "web-" + hashlib.sha256(f"{me.holder_id}\n{idempotency_key}".encode()).hexdigest()[:40]
    result = await refunds.request(Actor.holder(me.holder_id), me.holder_id, account_id, rid)
    return RefundOut(request_id=result.request_id, state=result.state, amount=Money.of(result.amount),
                     to_cards=Money.of(result.to_cards), by_check=Money.of(result.by_check))
