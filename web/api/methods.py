"""Payment methods: add a card through the gateway (the number exists only in this request and goes
straight to tokenize), list brand and last 4, remove. Owner-checked by payments: another holder's method
looks like none."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from payments.gateway import Declined, PaymentError
from payments.methods import MAX_KEY, MethodNotFound, PaymentMethod, PaymentMethods
from web.api.accounts import charge_key
from web.auth import Session
from web.deps import current, services
from web.problems import ApiProblem, responses
from web.schemas import MethodOut, NewCard
from web.services import Services

router = APIRouter(tags=["payment methods"])
Svc = Annotated[Services, Depends(services)]
Me = Annotated[Session, Depends(current)]


def _out(m: PaymentMethod) -> MethodOut:
    return MethodOut(method_id=m.method_id, brand=m.brand, last4=m.last4, exp_month=m.exp_month,
                     exp_year=m.exp_year)


def _methods(svc: Services) -> PaymentMethods:
    if svc.methods is None:
        raise ApiProblem(503, "card payments are not available right now")
    return svc.methods


@router.get("/payment-methods", response_model=list[MethodOut], responses=responses(401, 503),
            summary="The holder's stored cards: brand, last 4, expiry")
async def list_methods(me: Me, svc: Svc) -> list[MethodOut]:
    return [_out(m) for m in await _methods(svc).list_for(me.holder_id)]


@router.post("/payment-methods", status_code=201, response_model=MethodOut,
             responses=responses(401, 402, 403, 404, 422, 503),
             summary="Store a card (tokenized by the gateway; the number is never kept)")
async def add_method(card: NewCard, me: Me, svc: Svc,
                     idempotency_key: Annotated[str, Header(min_length=8, max_length=MAX_KEY,
                                                            pattern="^[\\x21-\\x7e]+$")]) -> MethodOut:
    try:
        method = await _methods(svc).add(me.holder_id, charge_key(me.holder_id, idempotency_key) + ":m",
                                         card.number, card.mmyy, card.cvv)
    except MethodNotFound:
        raise ApiProblem(404, "no such payment method") from None
    except Declined as exc:
        raise ApiProblem(402, f"the card was refused ({exc.reason}): check the number, expiry and security "
                              "code") from None
    except PaymentError:
        raise ApiProblem(503, "the card processor did not answer: try again with the same "
                              "Idempotency-Key") from None
    return _out(method)


@router.delete("/payment-methods/{method_id}", status_code=204, responses=responses(401, 403, 404, 503),
               summary="Remove a stored card: it is never charged again")
async def remove_method(method_id: str, me: Me, svc: Svc) -> Response:
    try:
        await _methods(svc).remove(me.holder_id, method_id)
    except MethodNotFound:
        raise ApiProblem(404, "there is no such payment method among yours") from None
    return Response(status_code=204)
