"""Errors as RFC 9457 problem+json with a plain sentence; the library errors mapped to HTTP statuses in
one place, and the OpenAPI `responses` each route declares so the contract tests can hold us to them."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import holders
from ledger import LedgerError, LedgerUnavailable
from web.auth import AuthError, Locked, TooMany
from web.schemas import Problem

log = structlog.get_logger("web")
MEDIA = "application/problem+json"


class ApiProblem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def not_found(what: str = "not found") -> ApiProblem:
    return ApiProblem(404, what)


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail)
    return JSONResponse(body.model_dump(), status_code=status, media_type=MEDIA, headers=headers)


HOLDER_STATUS = {holders.BadInput: 400, holders.CodeRefused: 400, holders.NotFound: 404,
                 holders.AlreadyClaimed: 409, holders.NotActive: 403, holders.RateLimited: 429,
                 holders.Unavailable: 503}


def _validation_sentence(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
    msg = str(first.get("msg", "is not valid")).rstrip(".")
    return f"{where}: {msg}" if where else msg


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, _validation_sentence(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(holders.HolderError)
    async def _holder(request: Request, exc: holders.HolderError) -> JSONResponse:
        status = next((s for kind, s in HOLDER_STATUS.items() if isinstance(exc, kind)), 400)
        return problem(status, str(exc))

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        status = 429 if isinstance(exc, TooMany) else 423 if isinstance(exc, Locked) else 401
        return problem(status, str(exc))

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        if isinstance(exc, LedgerUnavailable):
            return problem(503, "the account service is not reachable: try again in a minute")
        return problem(409, f"the account refused this: {exc}")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses a route may answer."""
    schema = Problem.model_json_schema()
    return {s: {"description": HTTPStatus(s).phrase, "content": {MEDIA: {"schema": schema}}}
            for s in statuses}
