"""How a call uses the ledger: its op ids, the one retry for idempotent ops, and which errors mean what.

Exactly once rests on the op ids: every instance that holds, captures, settles, voids or records a call
derives the same id from the call id, so a second attempt is a replay. They are formatted here and
nowhere else, and never change (Redis holds records keyed by them; tests/test_billing.py pins them).
Errors are told apart by class (`LedgerError.transient`, `LedgerUnavailable.not_applied`), never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions

from callcontrol.flows.ports import LedgerPort
from ledger import (
    AccountNotActive,
    BadAmount,
    BadId,
    BadInput,
    Balance,
    ExceedsHold,
    HoldNotPending,
    HoldState,
    IdConflict,
    InsufficientFunds,
    LedgerError,
    LedgerUnavailable,
    UnknownAccount,
    UnknownHold,
    account_id_for,
)
from rating.errors import RatingError

T = TypeVar("T")

RETRIES = 3

# A hold refused this way means the call is unfunded (a concurrent call took the funds, a frozen account).
HOLD_REFUSED = (InsufficientFunds, AccountNotActive, UnknownAccount)
# The hold is already resolved elsewhere (settled, voided, expired) or was never taken.
HOLD_GONE = (HoldNotPending, UnknownHold)
# A capture refused for good: stop metering and cut the call.
CAPTURE_REFUSED = (InsufficientFunds, AccountNotActive, ExceedsHold, UnknownAccount, BadAmount)
# A settlement our view of the captures (or of the hold) got wrong: the ledger's hold decides.
SETTLE_STALE = (ExceedsHold, BadAmount, HoldNotPending, IdConflict)


def account_for(facility_id: str, number_e164: str) -> str:
    """The account a call from this facility to this number bills (derived: no lookup needed)."""
    return account_id_for(facility_id, number_e164)


# -- op ids: byte for byte what Redis already holds ------------------------------------------------
def op_hold(call_id: str) -> str:
    return f"{call_id}:hold"


def op_capture(call_id: str, k: int) -> str:
    return f"{call_id}:cap:{k}"


def op_settle(call_id: str) -> str:
    return f"{call_id}:settle"


def op_settle_again(call_id: str) -> str:
    """The settlement retried with the ledger's own view of the hold (another total: another id)."""
    return f"{call_id}:settle2"


def op_void(call_id: str) -> str:
    return f"{call_id}:void"


def op_void_unused(call_id: str) -> str:
    """The inmate flow's void of a hold no call will use: its own id, so the settlement's `:void` then
    finds the hold resolved rather than the same id with another payload."""
    return f"{call_id}:void-unused"


def op_record(call_id: str) -> str:
    return f"{call_id}:record"


def op_block(call_id: str) -> str:
    return f"{call_id}:block"


def op_one_call(call_id: str, step: str) -> str:
    """A call paid by card: its ledger ops (open, dep, void, rest, close) under its gateway key."""
    return f"oc-{call_id}:{step}"


# -- errors ----------------------------------------------------------------------------------------
def transient(exc: BaseException) -> bool:
    """The same request may succeed later, unchanged: Redis down or slow, a socket error."""
    if isinstance(exc, LedgerError):
        return exc.transient
    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | OSError
                      | TimeoutError)


def maybe_applied(exc: BaseException) -> bool:
    """A ledger request failed with its outcome unknown: it may have run (so undo what it did)."""
    return isinstance(exc, LedgerUnavailable) and not exc.not_applied


def service_failure(exc: BaseException) -> bool:
    """Redis, the ledger or rating could not answer (fail closed: service_unavailable), as opposed to a
    bug of ours. A ledger refusal of a malformed request (BadInput, BadId) is the bug."""
    if isinstance(exc, LedgerError):
        return not isinstance(exc, BadInput | BadId)
    return transient(exc) or isinstance(exc, redis.exceptions.RedisError | RatingError)


async def retry(op: Callable[[], Awaitable[T]], tries: int = RETRIES) -> T:
    """Run an idempotent ledger op, again while it fails transiently (same op id: a retry is a replay)."""
    for attempt in range(tries - 1):
        try:
            return await op()
        except LedgerError as exc:
            if not exc.transient:
                raise
        await asyncio.sleep(0.05 * (attempt + 1))
    return await op()


# -- the call's ledger operations -----------------------------------------------------------------
async def hold(ledger: LedgerPort, call_id: str, account: str, amount: int, *, lease_seconds: int,
               meta: dict[str, str]) -> Balance:
    """The call's one hold (its id is the call id)."""
    return await ledger.hold(op_hold(call_id), account, call_id, amount, lease_seconds=lease_seconds,
                             meta=meta)


async def capture(ledger: LedgerPort, call_id: str, account: str, k: int, amount: int) -> HoldState:
    """Increment k's capture."""
    return await ledger.capture(op_capture(call_id, k), account, call_id, amount)


async def settle(ledger: LedgerPort, call_id: str, account: str, total: int, *,
                 again: bool = False) -> HoldState:
    """The call's total (`again`: recomputed from the ledger's view of the hold), retried while Redis
    does not answer."""
    op_id = op_settle_again(call_id) if again else op_settle(call_id)
    return await retry(lambda: ledger.settle(op_id, account, call_id, total))


async def void_unaccepted(ledger: LedgerPort, call_id: str, account: str) -> None:
    """Release the hold of a call nobody accepted (retried); one already resolved or never taken is done."""
    with contextlib.suppress(*HOLD_GONE):
        await retry(lambda: ledger.void(op_void(call_id), account, call_id, reason="not_accepted"))


async def void_unused(ledger: LedgerPort, call_id: str, account: str) -> None:
    """Release the hold of a call that will not dial; one already resolved or never taken is done."""
    with contextlib.suppress(*HOLD_GONE):
        await ledger.void(op_void_unused(call_id), account, call_id, reason="not_dialled")


async def record(ledger: LedgerPort, call_id: str, fields: dict[str, Any]) -> None:
    """The call's record (one per call id, synced to SQL), retried while Redis does not answer."""
    await retry(lambda: ledger.record_call(op_record(call_id), fields))


async def block(ledger: LedgerPort, call_id: str, facility_id: str, number_e164: str) -> None:
    """The recipient pressed 9: block this facility's calls to the number."""
    await ledger.set_block(op_block(call_id), facility_id, number_e164, True, source="recipient")
