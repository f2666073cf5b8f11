"""The JSON API under /api/v1, one router per resource; pages can be mounted as a router beside it."""

from fastapi import APIRouter

from web.api import accounts, facilities, holder, methods, money_back, request2call

router = APIRouter(prefix="/api/v1")
for module in (facilities, holder, accounts, money_back, methods, request2call):
    router.include_router(module.router)

__all__ = ["router"]
