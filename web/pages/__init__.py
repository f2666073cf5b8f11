"""The family's pages: server-rendered HTML over the same domain functions as the JSON API (the API's
route functions are called in-process, so both apply one set of rules), with no script needed. Each
refusal is shown as a plain sentence next to its field; a signed-out visitor is sent to sign in; another
holder's account is "not found" like one that does not exist."""

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from web.pages.accounts import router as accounts
from web.pages.core import HERE, install
from web.pages.public import router as public
from web.pages.request2call import router as request2call
from web.pages.settings import router as settings

router = APIRouter(include_in_schema=False)
for part in (public, accounts, settings, request2call):
    router.include_router(part)
static = StaticFiles(directory=HERE / "static")

__all__ = ["install", "router", "static"]
