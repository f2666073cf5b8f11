"""Who is asking: a bearer token (the API) or the session cookie (the pages). A cookie-authenticated
request that changes state must also carry the session's CSRF token (synchronizer token: header
`X-CSRF-Token` or form field `csrf_token`); a bearer request cannot be forged by another site, since a
browser never adds the header by itself."""

from __future__ import annotations

import asyncio
from hmac import compare_digest

from fastapi import Request

from web.auth import Session
from web.problems import ApiProblem
from web.services import Services

SESSION_COOKIE = "apc_session"
CSRF_COOKIE = "apc_csrf"          # readable by the page's script; the server checks it against the session
CSRF_HEADER = "x-csrf-token"
SAFE = ("GET", "HEAD", "OPTIONS")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def current(request: Request) -> Session:
    """The acting holder's session, or 401; 403 for a cookie request without its CSRF token."""
    svc = services(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        found = (await asyncio.to_thread(svc.auth.resolve, token.strip(), "bearer")
                 if scheme.lower() == "bearer" else None)
        if found is None:
            raise ApiProblem(401, "sign in first: the bearer token is missing, wrong or expired",
                             {"WWW-Authenticate": "Bearer"})
        return found
    cookie = request.cookies.get(SESSION_COOKIE, "")
    found = await asyncio.to_thread(svc.auth.resolve, cookie, "session") if cookie else None
    if found is None:
        raise ApiProblem(401, "sign in first", {"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get("csrf_token", ""))
        if not (sent and compare_digest(sent.encode(), found.csrf.encode())):
            raise ApiProblem(403, "this form has expired or did not come from our site: reload the page "
                                  "and try again")
    return found
