"""The JSON API under /api/v1, one router per resource; pages can be mounted as a router beside it."""

from fastapi import APIRouter

from web.api import accounts, facilities, holder, methods, money_back

router = APIRouter(prefix="/api/v1")
for module in (facilities, holder, accounts, money_back, methods):
    router.include_router(module.router)

__all__ = ["router"]
