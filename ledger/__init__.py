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
from ledger.keys import account_id_for
from ledger.scripts import Script
from ledger.scripts import make as make_script
from ledger.transport import Transport
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
    "Script",
    "Transport",
    "UnknownAccount",
    "UnknownHold",
    "account_id_for",
    "make_script",
]
