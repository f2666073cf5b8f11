"""The holder: sign up, sign in (a bearer token for the API, a session cookie for the pages), sign out,
password reset by a code to the mobile, and the profile with language, quiet hours and alerts."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from holders import Actor, Holder
from notify.model import EMAIL, SMS
from web import alerting
from web.auth import SESSION_MS, Session
from web.deps import CSRF_COOKIE, SESSION_COOKIE, client_of, current, services
from web.problems import responses
from web.schemas import (
    Alerts,
    Credentials,
    Money,
    Notice,
    Profile,
    ProfilePatch,
    QuietHours,
    ResetFinish,
    ResetStart,
    SessionOut,
    SignUp,
    TokenOut,
)
from web.services import Services

router = APIRouter(tags=["holder"])
Svc = Annotated[Services, Depends(services)]
Me = Annotated[Session, Depends(current)]


def _profile(holder: Holder, settings: alerting.Settings) -> Profile:
    prefs = settings.prefs
    return Profile(holder_id=holder.holder_id, name=holder.name, email=holder.email, mobile=holder.mobile,
                   language=holder.language, time_zone=holder.time_zone,
                   quiet_hours=QuietHours(start_minute=prefs.quiet_start, end_minute=prefs.quiet_end),
                   alerts=Alerts(low_balance=Money.of(settings.low_balance_cents),
                                 sms=SMS not in prefs.off_channels, email=EMAIL not in prefs.off_channels,
                                 muted_kinds=sorted(prefs.muted_kinds)))


async def _load(svc: Services, holder_id: str) -> Profile:
    holder = await asyncio.to_thread(svc.registry.get, Actor.holder(holder_id), holder_id)
    return _profile(holder, await asyncio.to_thread(alerting.read, svc.engine, svc.auth, holder_id))


@router.post("/signup", status_code=201, response_model=Profile, responses=responses(400, 422, 503),
             summary="Create a holder with a password")
async def sign_up(body: SignUp, svc: Svc) -> Profile:
    holder_id = await asyncio.to_thread(lambda: svc.auth.sign_up(
        name=body.name, email=body.email, mobile=body.mobile, password=body.password,
        language=body.language, time_zone=body.time_zone))
    return await _load(svc, holder_id)


@router.post("/tokens", status_code=201, response_model=TokenOut, responses=responses(401, 422, 423, 429),
             summary="Sign in for the API: a bearer token")
async def token(body: Credentials, request: Request, svc: Svc) -> TokenOut:
    holder_id = await asyncio.to_thread(svc.auth.sign_in, body.email, body.password, client_of(request))
    value, session = await asyncio.to_thread(svc.auth.issue, holder_id, "bearer")
    return TokenOut(token=value, expires_ts=session.expires_ts)


@router.delete("/tokens/current", status_code=204, responses=responses(401, 403),
               summary="Sign out: revoke the bearer token or the session in use")
async def sign_out(request: Request, response: Response, me: Me, svc: Svc) -> Response:
    header = request.headers.get("authorization", "")
    value = header.partition(" ")[2].strip() if header else request.cookies.get(SESSION_COOKIE, "")
    await asyncio.to_thread(svc.auth.revoke, value)
    done = Response(status_code=204)
    done.delete_cookie(SESSION_COOKIE, path="/")
    done.delete_cookie(CSRF_COOKIE, path="/")
    return done


@router.post("/session", status_code=201, response_model=SessionOut, responses=responses(401, 422, 423, 429),
             summary="Sign in for the pages: a session cookie and its CSRF token")
async def session(body: Credentials, request: Request, response: Response, svc: Svc) -> SessionOut:
    holder_id = await asyncio.to_thread(svc.auth.sign_in, body.email, body.password, client_of(request))
    value, found = await asyncio.to_thread(svc.auth.issue, holder_id, "session")
    set_session_cookies(response, value, found, secure=svc.config.cookie_secure)
    return SessionOut(csrf_token=found.csrf, expires_ts=found.expires_ts)


def set_session_cookies(response: Response, value: str, found: Session, *, secure: bool) -> None:
    """The session itself: Secure, HttpOnly, SameSite=Lax. Its CSRF token is readable by the page."""
    age = SESSION_MS // 1000
    response.set_cookie(SESSION_COOKIE, value, httponly=True, secure=secure, samesite="lax", path="/",
                        max_age=age)
    response.set_cookie(CSRF_COOKIE, found.csrf, httponly=False, secure=secure, samesite="lax", path="/",
                        max_age=age)


@router.post("/password-reset", status_code=202, response_model=Notice, responses=responses(422, 503),
             summary="Send a reset code to the holder's mobile (the answer is the same for any email)")
async def reset_start(body: ResetStart, svc: Svc) -> Notice:
    await asyncio.to_thread(svc.auth.reset_start, body.email)
    return Notice(status="code_sent_if_known",
                  detail="if this email has an account, a 6-digit code is on its way to its mobile")


@router.post("/password-reset/confirm", status_code=204, responses=responses(400, 401, 422, 503),
             summary="Set a new password with the code; every session and token is signed out")
async def reset_finish(body: ResetFinish, svc: Svc) -> Response:
    await asyncio.to_thread(svc.auth.reset_finish, body.email, body.code, body.password)
    return Response(status_code=204)


@router.get("/me", response_model=Profile, responses=responses(401), summary="The holder's profile")
async def me(me: Me, svc: Svc) -> Profile:
    return await _load(svc, me.holder_id)


@router.patch("/me", response_model=Profile, responses=responses(400, 401, 403, 422),
              summary="Change name, mobile, language, time zone, quiet hours or alerts")
async def patch_me(body: ProfilePatch, me: Me, svc: Svc) -> Profile:
    actor = Actor.holder(me.holder_id)
    if any(v is not None for v in (body.name, body.mobile, body.language, body.time_zone)):
        await asyncio.to_thread(lambda: svc.registry.update(
            actor, me.holder_id, name=body.name, mobile=body.mobile, language=body.language,
            time_zone=body.time_zone))
    quiet = None if body.quiet_hours is None else (body.quiet_hours.start_minute, body.quiet_hours.end_minute)
    await asyncio.to_thread(lambda: alerting.write(
        svc.engine, svc.auth, svc.registry, me.holder_id, quiet=quiet, sms=body.alerts_sms,
        email=body.alerts_email, muted_kinds=body.muted_kinds, low_balance_cents=body.low_balance_cents))
    return await _load(svc, me.holder_id)
