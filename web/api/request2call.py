"""Request2Call: the holder asks an inmate (facility + inmate number) to call one of the holder's verified
numbers there; lists its requests (pending, answered, expired, cancelled) and cancels a pending one.

The rules are holders' `CallRequests` (one pending per holder and inmate, expiry, the facility switch, the
acting holder checked); this module turns its refusals into plain sentences. Another holder's request and
a missing one are the same 404."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends

import holders
from holders import Actor
from holders.request2call import AlreadyPending, FeatureOff, Request
from web.api.accounts import facility_known
from web.auth import Session
from web.deps import current, services
from web.problems import ApiProblem, responses
from web.schemas import CallRequestIn, CallRequestOut
from web.services import Services

router = APIRouter(tags=["request2call"])
Svc = Annotated[Services, Depends(services)]
Me = Annotated[Session, Depends(current)]
NOT_YOURS = "there is no such call request among yours"


class Refused(ApiProblem):
    """A refusal of the form's field `field` (the page shows the sentence next to it)."""

    def __init__(self, status: int, detail: str, field: str) -> None:
        super().__init__(status, detail)
        self.field = field


def out(r: Request) -> CallRequestOut:
    return CallRequestOut(request_id=r.request_id, facility_id=r.facility_id, inmate_id=r.inmate_id,
                          number=r.number_e164, status=r.status, created_ts=r.created_ts,
                          expires_ts=r.expires_ts, closed_ts=r.closed_ts)


@router.post("/request2call", status_code=201, response_model=CallRequestOut,
             responses=responses(400, 401, 403, 409, 422, 503),
             summary="Ask an inmate to call one of your verified numbers (free; expires after some days)")
async def create(body: CallRequestIn, me: Me, svc: Svc) -> CallRequestOut:
    await facility_known(svc, body.facility_id)
    if not svc.catalog.facility(body.facility_id).request2call:
        raise _off(svc, body.facility_id)
    actor = Actor.holder(me.holder_id)
    links = await asyncio.to_thread(svc.registry.accounts, actor, me.holder_id)
    if not any(x.facility_id == body.facility_id and x.number == body.number for x in links):
        raise Refused(400, f"{body.number[:16]} is not one of your verified numbers at "
                              f"{body.facility_id}: add it under 'Add an account' first", "number")
    try:
        made = await asyncio.to_thread(svc.requests.create, actor, me.holder_id, body.facility_id,
                                       body.inmate_id, body.number)
    except AlreadyPending:
        raise Refused(409, f"you already have a request waiting for inmate {body.inmate_id}: cancel it "
                           "or wait for the call", "inmate_id") from None
    except FeatureOff:
        raise _off(svc, body.facility_id) from None
    return out(made)


def _off(svc: Services, facility_id: str) -> Refused:
    return Refused(409, f"{svc.catalog.facility(facility_id).name} does not take call requests "
                        "(Request2Call is switched off there)", "facility_id")


@router.get("/request2call", response_model=list[CallRequestOut], responses=responses(401, 503),
            summary="Your call requests, newest first: pending, answered, expired or cancelled")
async def list_requests(me: Me, svc: Svc) -> list[CallRequestOut]:
    found = await asyncio.to_thread(svc.requests.of_holder, Actor.holder(me.holder_id), me.holder_id)
    return [out(r) for r in found]


@router.delete("/request2call/{request_id}", response_model=CallRequestOut,
               responses=responses(401, 403, 404, 409, 503), summary="Cancel a pending call request")
async def cancel(request_id: str, me: Me, svc: Svc) -> CallRequestOut:
    try:
        done = await asyncio.to_thread(svc.requests.cancel, Actor.holder(me.holder_id), request_id[:64])
    except holders.NotFound:
        raise ApiProblem(404, NOT_YOURS) from None
    except holders.BadInput:
        raise ApiProblem(409, "this request is no longer waiting: it was answered, cancelled or has "
                              "expired") from None
    return out(done)
