"""Ask for a call (Request2Call): the form (facility, inmate number, one of the holder's verified numbers)
and the list of the holder's requests with a cancel button on each pending one. The page calls the API's
route functions in-process (`web.api.request2call`), so both apply one set of rules; a refusal stands
next to its field."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.api import accounts as accounts_api
from web.api import request2call as api
from web.auth import Session
from web.deps import services
from web.pages.accounts import day, page
from web.pages.core import REFUSED, field_of, go, me, sentence, text
from web.schemas import CallRequestIn

router = APIRouter()
URL = "/request2call"


async def _page(request: Request, session: Session, status: int = 200, **values: object) -> Response:
    svc = services(request)
    accounts = await accounts_api.list_accounts(session, svc)
    numbers = [(a.facility_id, a.number) for a in accounts]
    names = {f.id: f.name for f in svc.catalog.facilities}
    facilities = sorted({(f, names.get(f, f)) for f, _ in numbers}, key=lambda x: x[1])
    return await page(request, "request2call.html", session, status=status, numbers=numbers,
                      facilities=facilities, names=names, day=day,
                      requests=await api.list_requests(session, svc), **values)


@router.get(URL)
async def request2call_page(request: Request) -> Response:
    return await _page(request, await me(request), sent=request.query_params.get("sent") == "1")


@router.post(URL)
async def ask(request: Request) -> Response:
    session, form = await me(request), await request.form()
    values = {"facility_id": text(form, "facility_id", 64), "inmate_id": text(form, "inmate_id", 32),
              "number": text(form, "number", 16)}
    try:
        await api.create(CallRequestIn.model_validate(values), session, services(request))
    except REFUSED as exc:
        where = exc.field if isinstance(exc, api.Refused) else field_of(exc, "facility_id")
        if where not in values:
            where = "facility_id"
        return await _page(request, session, status=400, form=values, errors={where: sentence(exc)})
    return go(URL + "?sent=1")


@router.post(URL + "/{request_id}/cancel")
async def cancel(request_id: str, request: Request) -> Response:
    session = await me(request)
    try:
        await api.cancel(request_id[:64], session, services(request))
    except api.Refused as exc:
        return await _page(request, session, status=400, errors={"list": sentence(exc)})
    return go(URL)
