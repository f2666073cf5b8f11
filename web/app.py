"""The ASGI app: the JSON API router, problem+json errors, and the services opened in the lifespan.
`create_app(config)` is what uvicorn serves and what tests start on a loopback port; the pages
(`web.pages`) are a second router on the same services, with their stylesheet under /static."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from web import pages, problems
from web.api import router as api_router
from web.services import WebConfig, open_services


def create_app(config: WebConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await open_services(config)
        try:
            yield
        finally:
            await app.state.services.close()

    app = FastAPI(title="AdvancePay family API", version="1", lifespan=lifespan,
                  description="Facilities and rates, the holder's sign-in and profile, accounts, payment "
                              "methods and deposits. Money is integer cents plus a formatted string.")
    problems.install(app)
    app.include_router(api_router)
    pages.install(app)
    app.include_router(pages.router)
    app.mount("/static", pages.static, name="static")
    return app
