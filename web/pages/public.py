"""Pages open to anyone: the landing page with facility search, a facility's rates, sign up, sign in,
sign out and password reset."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.api import facilities
from web.api import holder as holder_api
from web.deps import CSRF_COOKIE, SESSION_COOKIE, client_of, services
from web.pages.core import REFUSED, check_pre, field_of, go, me, render, sentence, text
from web.schemas import Credentials, ResetFinish, ResetStart, SignUp

router = APIRouter()


@router.get("/")
async def landing(request: Request) -> Response:
    q, state = request.query_params.get("q", "")[:100], request.query_params.get("state", "")[:2]
    svc = services(request)
    found = await facilities.search(svc, q, state) if q or state else []
    return render(request, "landing.html", q=q, state=state, found=found, searched=bool(q or state))


@router.get("/facilities/{facility_id}/rates")
async def rates(facility_id: str, request: Request) -> Response:
    return render(request, "rates.html", fac=await facilities.detail(facility_id, services(request)))


@router.get("/signup")
async def signup_page(request: Request) -> Response:
    return render(request, "signup.html")


@router.post("/signup")
async def signup(request: Request) -> Response:
    await check_pre(request)
    form = await request.form()
    values = {k: text(form, k) for k in ("name", "email", "mobile", "language")}
    password = text(form, "password", 200)
    svc = services(request)
    try:
        body = SignUp.model_validate({**values, "password": password, "language": values["language"] or "en"})
        await holder_api.sign_up(body, svc)
    except REFUSED as exc:
        where = field_of(exc, _signup_field(sentence(exc)))
        return render(request, "signup.html", status=400, form=values, errors={where: sentence(exc)})
    return await _start_session(request, body.email, password, "/accounts/new")


def _signup_field(message: str) -> str:
    for word, name in (("password", "password"), ("email", "email"), ("mobile", "mobile"),
                       ("number", "mobile"), ("name", "name")):
        if word in message:
            return name
    return "email"


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return render(request, "signin.html")


@router.post("/signin")
async def signin(request: Request) -> Response:
    await check_pre(request)
    form = await request.form()
    email = text(form, "email")
    try:
        Credentials(email=email, password=text(form, "password", 200))
        return await _start_session(request, email, text(form, "password", 200), "/home")
    except REFUSED as exc:
        return render(request, "signin.html", status=401, form={"email": email},
                      errors={"password": sentence(exc)})


async def _start_session(request: Request, email: str, password: str, then: str) -> Response:
    svc = services(request)
    holder_id = await asyncio.to_thread(svc.auth.sign_in, email, password, client_of(request))
    value, found = await asyncio.to_thread(svc.auth.issue, holder_id, "session")
    response = go(then)
    holder_api.set_session_cookies(response, value, found, secure=svc.config.cookie_secure)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    await me(request)                              # a signed-in form with its CSRF token
    svc = services(request)
    await asyncio.to_thread(svc.auth.revoke, request.cookies.get(SESSION_COOKIE, ""))
    response = go("/")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/reset")
async def reset_page(request: Request) -> Response:
    return render(request, "reset.html", step="start")


@router.post("/reset")
async def reset_start(request: Request) -> Response:
    await check_pre(request)
    email = text(await request.form(), "email")
    try:
        await holder_api.reset_start(ResetStart(email=email), services(request))
    except REFUSED as exc:
        return render(request, "reset.html", status=400, step="start", form={"email": email},
                      errors={"email": sentence(exc)})
    return render(request, "reset.html", step="finish", form={"email": email})


@router.post("/reset/confirm")
async def reset_finish(request: Request) -> Response:
    await check_pre(request)
    form = await request.form()
    email, code = text(form, "email"), text(form, "code", 12)
    try:
        body = ResetFinish(email=email, code=code, password=text(form, "password", 200))
        await holder_api.reset_finish(body, services(request))
    except REFUSED as exc:
        where = field_of(exc, "password" if "password" in sentence(exc) else "code")
        return render(request, "reset.html", status=400, step="finish", form={"email": email},
                      errors={where: sentence(exc)})
    return render(request, "signin.html", form={"email": email}, notice="done")
