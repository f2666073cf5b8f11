"""Account holders: the people who own AdvancePay accounts, and the proof that they control a number."""

from holders.access import Actor
from holders.errors import (
    AlreadyClaimed,
    BadInput,
    CodeRefused,
    HolderError,
    NotActive,
    NotFound,
    RateLimited,
    Unavailable,
)
from holders.profile import Holder
from holders.registry import Link, Registry
from holders.sender import CodeSender, DevCodeSender

__all__ = ["Actor", "AlreadyClaimed", "BadInput", "CodeRefused", "CodeSender", "DevCodeSender", "Holder",
           "HolderError", "Link", "NotActive", "NotFound", "RateLimited", "Registry", "Unavailable"]
