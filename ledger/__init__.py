"""Two-phase prepaid ledger: atomic Lua operations in Redis, journal synced exactly once to SQL."""

from ledger.core import Ledger
from ledger.errors import (
    AccountNotActive,
    AccountNotEmpty,
    BadAmount,
    BadId,
    BadInput,
    ExceedsHold,
    HoldNotPending,
    IdConflict,
    InsufficientFunds,
    LedgerError,
    LedgerInternal,
    LedgerUnavailable,
    UnknownAccount,
    UnknownHold,
)
from ledger.types import Balance, HoldState

__all__ = [
    "AccountNotActive",
    "AccountNotEmpty",
    "BadAmount",
    "BadId",
    "BadInput",
    "Balance",
    "ExceedsHold",
    "HoldNotPending",
    "HoldState",
    "IdConflict",
    "InsufficientFunds",
    "Ledger",
    "LedgerError",
    "LedgerInternal",
    "LedgerUnavailable",
    "UnknownAccount",
    "UnknownHold",
]
