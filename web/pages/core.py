"""What every page needs: the Jinja2 environment, the visitor's language, the signed-in holder (or a
redirect to sign in), the CSRF token every form carries, and the sentence of a refused operation.

Signed-in forms carry the session's synchronizer token (checked by `web.deps.current`, the same check the
API uses); the forms before sign-in carry a double-submit token from the `apc_pre` cookie, so another site
cannot sign a family in or up as someone else."""

from __future__ import annotations

import secrets
from hmac import compare_digest
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

import holders
from ledger import LedgerError, LedgerUnavailable
from ledger.money import fmt_cents
from web import problems
from web.auth import AuthError, Session
from web.deps import current, services
from web.pages.i18n import LANGS, translator
from web.problems import ApiProblem

HERE = Path(__file__).parent
PRE_COOKIE = "apc_pre"
LANG_COOKIE = "apc_lang"
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters["money"] = fmt_cents


class SignInFirst(Exception):
    """Raised by `me()`: the page answers with a redirect to the sign-in page."""


def language(request: Request, holder_language: str = "") -> str:
    asked = request.query_params.get("lang", "")
    if asked in LANGS:
        return asked
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGS:
        return chosen
    if holder_language in LANGS:
        return holder_language
    return "es" if request.headers.get("accept-language", "").lower().startswith("es") else "en"


async def me(request: Request) -> Session:
    """The holder of the session cookie (the CSRF token checked on a POST), or SignInFirst."""
    try:
        return await current(request)
    except ApiProblem as exc:
        if exc.status == 401:
            raise SignInFirst() from None
        raise


def pre_token(request: Request) -> str:
    return request.cookies.get(PRE_COOKIE, "") or secrets.token_urlsafe(24)


async def check_pre(request: Request) -> None:
    """The double-submit check for the forms shown before sign-in."""
    form = await request.form()
    sent, kept = str(form.get("csrf_token", "")), request.cookies.get(PRE_COOKIE, "")
    if not (sent and kept and compare_digest(sent.encode(), kept.encode())):
        raise ApiProblem(403, "this form has expired or did not come from our site: reload the page and "
                              "try again")


def render(request: Request, name: str, *, status: int = 200, session: Session | None = None,
           holder_language: str = "", **values: Any) -> HTMLResponse:
    lang = language(request, holder_language)
    csrf = session.csrf if session is not None else pre_token(request)
    body = env.get_template(name).render({"errors": {}, "form": {}, **values}, t=translator(lang), lang=lang,
                                         csrf=csrf, signed_in=session is not None, path=request.url.path)
    response = HTMLResponse(body, status_code=status)
    if session is None and not request.cookies.get(PRE_COOKIE):
        secure = services(request).config.cookie_secure
        response.set_cookie(PRE_COOKIE, csrf, httponly=True, secure=secure, samesite="strict", path="/")
    if request.query_params.get("lang", "") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="lax", path="/", max_age=31_536_000)
    return response


def go(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def sentence(exc: Exception) -> str:
    """The plain sentence of a refusal, shown next to its field."""
    if isinstance(exc, ApiProblem):
        return exc.detail
    if isinstance(exc, LedgerUnavailable):
        return "the account service is not reachable: try again in a minute"
    if isinstance(exc, LedgerError):
        return f"the account refused this: {exc}"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return str(first.get("msg", "this is not valid")).removeprefix("Value error, ").rstrip(".")
    return str(exc)


def field_of(exc: Exception, default: str) -> str:
    """Which field a validation error belongs to, so the sentence stands next to it."""
    if isinstance(exc, ValidationError) and exc.errors():
        loc = exc.errors()[0].get("loc", ())
        return str(loc[-1]) if loc else default
    return default


REFUSED: tuple[type[Exception], ...] = (ApiProblem, holders.HolderError, AuthError, LedgerError,
                                        ValidationError)
# ... and an amount or a time the page could not read
REFUSED_INPUT: tuple[type[Exception], ...] = (*REFUSED, ValueError)


def install(app: FastAPI) -> None:
    """Pages answer in HTML: signed out -> the sign-in page; a refusal the API answers with problem+json
    (404 not yours, 403 stale form, 503) -> a page with the sentence. /api/ keeps its problem+json."""
    api_problem = app.exception_handlers[ApiProblem]

    @app.exception_handler(SignInFirst)
    async def _sign_in(request: Request, exc: SignInFirst) -> Response:
        return go("/signin")

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> Response:
        if request.url.path.startswith("/api/"):
            return await problems_answer(api_problem, request, exc)
        return problem_page(request, exc.status, exc.detail)

    @app.exception_handler(LedgerUnavailable)
    async def _ledger(request: Request, exc: LedgerUnavailable) -> Response:
        if request.url.path.startswith("/api/"):
            return problems.problem(503, "the account service is not reachable: try again in a minute")
        return problem_page(request, 503, "the account service is not reachable: try again in a minute")


async def problems_answer(handler: Any, request: Request, exc: Exception) -> Response:
    answer: Response = await handler(request, exc)
    return answer


def problem_page(request: Request, status: int, detail: str) -> Response:
    title = "Not found" if status == 404 else "Something went wrong"
    message = "There is nothing here, or it is not yours." if status == 404 else detail
    return render(request, "problem.html", status=status, title=title, message=message)


def text(form: Any, name: str, limit: int = 300) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def cents(value: str) -> int:
    """Dollars as typed ("25", "25.5", "$1,025.00") to integer cents, without a float."""
    raw = value.replace("$", "").replace(",", "").strip()
    whole, _, frac = raw.partition(".")
    if not (whole or frac) or not (whole or "0").isdigit() or (frac and not frac.isdigit()) or len(frac) > 2 \
            or len(whole) > 7:
        raise ValueError("write the amount in dollars, like 25 or 25.50")
    return int(whole or "0") * 100 + int(frac.ljust(2, "0") or "0")
