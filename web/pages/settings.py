"""The holder's settings: stored cards (add through the gateway, remove) and alert preferences (low-balance
amount, channels, quiet hours, language)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from web.api import holder as holder_api
from web.api import methods as api
from web.auth import Session
from web.deps import services
from web.pages.accounts import page
from web.pages.core import REFUSED, REFUSED_INPUT, cents, field_of, go, me, sentence, text
from web.schemas import NewCard, ProfilePatch, QuietHours

router = APIRouter()


async def _cards_page(request: Request, session: Session, status: int = 200, **values: object) -> Response:
    cards = await api.list_methods(session, services(request))
    values.setdefault("key", secrets.token_urlsafe(18))
    return await page(request, "cards.html", session, status=status, cards=cards, **values)


@router.get("/cards")
async def cards_page(request: Request) -> Response:
    return await _cards_page(request, await me(request))


@router.post("/cards")
async def add_card(request: Request) -> Response:
    session, form = await me(request), await request.form()
    key = text(form, "key", 60)
    try:
        card = NewCard(number=text(form, "card_number", 30).replace(" ", ""),
                       expiry=text(form, "card_expiry", 10), cvv=text(form, "card_cvv", 6))
        await api.add_method(card, session, services(request), idempotency_key="page-" + key)
    except REFUSED as exc:
        where = {"number": "card_number", "expiry": "card_expiry", "cvv": "card_cvv"}.get(
            field_of(exc, "card_number"), "card_number")
        return await _cards_page(request, session, status=400, key=key, errors={where: _card_sentence(exc)})
    return go("/cards")


def _card_sentence(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "check the card number (digits only), the expiry (MM/YY) and the 3 or 4 digit security code"
    return sentence(exc)


@router.post("/cards/{method_id}/remove")
async def remove_card(method_id: str, request: Request) -> Response:
    session = await me(request)
    await api.remove_method(method_id[:40], session, services(request))
    return go("/cards")


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    session = await me(request)
    return await page(request, "alerts.html", session,
                      profile=await holder_api.me(session, services(request)))


def _minute(value: str) -> int:
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ValueError("write the time as HH:MM, like 21:00")
    return int(hours) * 60 + int(minutes)


@router.post("/alerts")
async def alerts_set(request: Request) -> Response:
    session, form, svc = await me(request), await request.form(), services(request)
    field = "low_balance"
    try:
        low = cents(text(form, "low_balance", 20))
        field = "quiet"
        quiet = QuietHours(start_minute=_minute(text(form, "quiet_start", 5)),
                           end_minute=_minute(text(form, "quiet_end", 5)))
        field = "language"
        await holder_api.patch_me(ProfilePatch.model_validate(dict(
            low_balance_cents=low, alerts_sms=bool(text(form, "alerts_sms", 5)),
            alerts_email=bool(text(form, "alerts_email", 5)), quiet_hours=quiet,
            language=text(form, "language", 2) or None)), session, svc)
    except REFUSED_INPUT as exc:
        return await page(request, "alerts.html", session, status=400,
                          profile=await holder_api.me(session, svc), errors={field: sentence(exc)})
    response = await page(request, "alerts.html", session, profile=await holder_api.me(session, svc),
                          saved=True)
    response.delete_cookie("apc_lang", path="/")      # the holder's language now decides
    return response
