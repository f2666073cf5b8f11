"""The signed-in holder's accounts: the dashboard, claiming and verifying an account, deposits with a
receipt, the statement (chart and CSV), AutoReload and the refund request. Every account page first finds
the account among the holder's own (`web.api.accounts.owned`): anyone else's is "not found"."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.exc import NoResultFound

from holders import Actor, Link
from holders.history import Event, events
from ledger import UnknownAccount
from web import alerting
from web.api import accounts as api
from web.api import money_back
from web.auth import Session
from web.deps import services
from web.pages.chart import points, svg
from web.pages.core import REFUSED, REFUSED_INPUT, cents, field_of, go, me, render, sentence, text
from web.problems import ApiProblem
from web.schemas import Claim, DepositIn, NewCard, Verify
from web.services import Services

router = APIRouter()
CSV_ROWS = 5_000


async def page(request: Request, name: str, session: Session, status: int = 200,
               **values: object) -> Response:
    svc = services(request)
    holder = await asyncio.to_thread(svc.registry.get, Actor.holder(session.holder_id), session.holder_id)
    return render(request, name, status=status, session=session, holder_language=holder.language,
                  holder=holder, **values)


async def history(svc: Services, link: Link, limit: int) -> list[Event]:
    await asyncio.to_thread(svc.drain_journal)

    def read() -> list[Event]:
        with svc.engine.connect() as conn:
            return events(conn, [link.account_id], limit=limit, offset=0)
    return await asyncio.to_thread(read)


def day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


@router.get("/home")
async def dashboard(request: Request) -> Response:
    session, svc = await me(request), services(request)
    alerts = await asyncio.to_thread(alerting.read, svc.engine, svc.auth, session.holder_id)
    rows = []
    for account in await api.list_accounts(session, svc):
        link = await api.owned(svc, session, account.account_id)
        calls = [e for e in await history(svc, link, 20) if e.kind == "call"][:3]
        threshold = alerts.thresholds.get(account.account_id, 0)
        low = account.balance is not None and account.balance.available.cents < threshold
        rows.append({"a": account, "calls": calls, "low": low, "alert": threshold})
    return await page(request, "dashboard.html", session, rows=rows, day=day)


# --- claim and verify -------------------------------------------------------------------------------
@router.get("/accounts/new")
async def claim_page(request: Request) -> Response:
    session = await me(request)
    return await page(request, "claim.html", session, step="claim", facilities=_facilities(request))


def _facilities(request: Request) -> list[tuple[str, str]]:
    return [(f.id, f"{f.name} ({f.state})") for f in sorted(services(request).catalog.facilities,
                                                             key=lambda f: f.name)]


@router.post("/accounts/new")
async def claim(request: Request) -> Response:
    session, form = await me(request), await request.form()
    values = {k: text(form, k) for k in ("facility_id", "number", "channel")}
    try:
        await api.claim(Claim(facility_id=values["facility_id"], number=values["number"],
                              channel=values["channel"] or "sms"), session, services(request))
    except REFUSED as exc:
        return await page(request, "claim.html", session, status=400, step="claim", form=values,
                          facilities=_facilities(request),
                          errors={field_of(exc, "number"): sentence(exc)})
    return await page(request, "claim.html", session, step="verify", form=values)


@router.post("/accounts/verify")
async def verify(request: Request) -> Response:
    session, form = await me(request), await request.form()
    values = {k: text(form, k) for k in ("facility_id", "number")}
    try:
        account = await api.verify(Verify(code=text(form, "code", 12), **values), session, services(request))
    except REFUSED as exc:
        return await page(request, "claim.html", session, status=400, step="verify", form=values,
                          errors={"code": sentence(exc)})
    return go(f"/accounts/{account.account_id}/deposit")


# --- deposit and receipt ----------------------------------------------------------------------------
async def _deposit_page(request: Request, session: Session, link: Link, status: int = 200,
                        **values: object) -> Response:
    svc = services(request)
    cards = await svc.methods.list_for(session.holder_id) if svc.methods is not None else []
    values.setdefault("key", secrets.token_urlsafe(18))       # one deposit per form: a resend replays it
    return await page(request, "deposit.html", session, status=status, link=link, cards=cards,
                      low=svc.config.deposit_min_cents, high=svc.config.deposit_max_cents, **values)


@router.get("/accounts/{account_id}/deposit")
async def deposit_page(account_id: str, request: Request) -> Response:
    session = await me(request)
    return await _deposit_page(request, session, await api.owned(services(request), session, account_id))


@router.post("/accounts/{account_id}/deposit")
async def deposit(account_id: str, request: Request) -> Response:
    session, form, svc = await me(request), await request.form(), services(request)
    link = await api.owned(svc, session, account_id)
    key, method = text(form, "key", 60), text(form, "method", 40)
    shown = {"amount": text(form, "amount", 20), "method": method}
    field = "amount"
    try:
        amount = cents(shown["amount"])
        field = "method"
        card = None
        if method == "new":
            field = "card"
            card = NewCard(number=text(form, "card_number", 30).replace(" ", ""),
                           expiry=text(form, "card_expiry", 10), cvv=text(form, "card_cvv", 6))
        stored = None if method == "new" else method or None
        body = DepositIn(amount_cents=amount, method_id=stored, card=card)
        await api.deposit(account_id, body, session, svc, idempotency_key="page-" + key)
    except REFUSED_INPUT as exc:
        where = "amount" if "amount" in sentence(exc) else field
        return await _deposit_page(request, session, link, status=400, key=key, form=shown,
                                   errors={where: sentence(exc)})
    return go(f"/accounts/{link.account_id}/receipt?key={key}")


@router.get("/accounts/{account_id}/receipt")
async def receipt(account_id: str, request: Request) -> Response:
    session, svc = await me(request), services(request)
    link = await api.owned(svc, session, account_id)
    key = api.charge_key(session.holder_id, "page-" + request.query_params.get("key", "")[:60])
    try:
        found = await api._receipt(svc, key, link.account_id)
    except NoResultFound:
        raise ApiProblem(404, "there is no such receipt") from None
    if found.account_id != link.account_id:
        raise ApiProblem(404, "there is no such receipt")
    balance = await api.get_account(link.account_id, session, svc)
    return await page(request, "receipt.html", session, r=found, link=link, account=balance,
                      when=day(found.created_ts))


# --- statement --------------------------------------------------------------------------------------
@router.get("/accounts/{account_id}/statement")
async def statement(account_id: str, request: Request) -> Response:
    session, svc = await me(request), services(request)
    link = await api.owned(svc, session, account_id)
    found = await history(svc, link, 200)
    try:
        posted = (await svc.ledger.balance(link.account_id)).posted
    except UnknownAccount:
        posted = 0
    lang_title = "Balance over time"
    return await page(request, "statement.html", session, link=link, items=found[:50], day=day,
                      chart=svg(points(found, posted), lang_title))


@router.get("/accounts/{account_id}/statement.csv")
async def statement_csv(account_id: str, request: Request) -> Response:
    session, svc = await me(request), services(request)
    link = await api.owned(svc, session, account_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date_utc", "kind", "amount_cents", "amount", "detail"])
    for e in await history(svc, link, CSV_ROWS):
        dollars = f"{'-' if e.amount < 0 else ''}{abs(e.amount) // 100}.{abs(e.amount) % 100:02d}"
        writer.writerow([day(e.ts_ms), e.kind, e.amount, dollars, e.detail])
    name = f"statement-{link.facility_id}-{link.number.lstrip('+')}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- AutoReload -------------------------------------------------------------------------------------
async def _reload_page(request: Request, session: Session, link: Link, status: int = 200,
                       **values: object) -> Response:
    svc = services(request)
    cards = await svc.methods.list_for(session.holder_id) if svc.methods is not None else []
    now = await money_back.show(link.account_id, session, svc)
    return await page(request, "autoreload.html", session, status=status, link=link, cards=cards, now=now,
                      **values)


@router.get("/accounts/{account_id}/autoreload")
async def reload_page(account_id: str, request: Request) -> Response:
    session = await me(request)
    return await _reload_page(request, session, await api.owned(services(request), session, account_id))


@router.post("/accounts/{account_id}/autoreload")
async def reload_set(account_id: str, request: Request) -> Response:
    session, form, svc = await me(request), await request.form(), services(request)
    link = await api.owned(svc, session, account_id)
    shown = {k: text(form, k, 40) for k in ("threshold", "amount", "method_id")}
    field = "threshold"
    try:
        if text(form, "off", 5):
            await money_back.switch_off(link.account_id, session, svc)
        else:
            threshold = cents(shown["threshold"])
            field = "amount"
            amount = cents(shown["amount"])
            field = "method_id"
            body = money_back.ReloadIn(threshold_cents=threshold, amount_cents=amount,
                                       method_id=shown["method_id"])
            await money_back.switch_on(link.account_id, body, session, svc)
    except REFUSED_INPUT as exc:
        message = sentence(exc)
        where = next((f for f, w in (("threshold", "threshold"), ("amount", "amount"), ("method_id", "card"))
                      if w in message), field)
        return await _reload_page(request, session, link, status=400, form=shown, errors={where: message})
    return await _reload_page(request, session, link, saved=True)


# --- refund -----------------------------------------------------------------------------------------
@router.get("/accounts/{account_id}/refund")
async def refund_page(account_id: str, request: Request) -> Response:
    session = await me(request)
    link = await api.owned(services(request), session, account_id)
    return await page(request, "refund.html", session, link=link, key=secrets.token_urlsafe(18))


@router.post("/accounts/{account_id}/refund")
async def refund(account_id: str, request: Request) -> Response:
    session, form, svc = await me(request), await request.form(), services(request)
    link = await api.owned(svc, session, account_id)
    key = text(form, "key", 60)
    try:
        result = await money_back.refund(link.account_id, session, svc, idempotency_key="page-" + key)
    except REFUSED as exc:
        return await page(request, "refund.html", session, status=400, link=link, key=key,
                          errors={"refund": sentence(exc)})
    return await page(request, "refund.html", session, link=link, key=key, result=result)
