"""Typed ledger errors: `code` is the machine-readable reason, the message is for humans."""

from __future__ import annotations

from typing import ClassVar


class LedgerError(Exception):
    """Base of every refusal; nothing changed when one is raised (except LedgerUnavailable: unknown).

    `transient` says whether the same request may succeed later unchanged (Redis back): callers retry
    by class, never by name, so renaming an error cannot change what is retried."""

    code: str = "ledger_error"
    transient: ClassVar[bool] = False

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        if code is not None:
            self.code = code


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class UnknownAccount(LedgerError):
    code = "unknown_account"


class AccountNotActive(LedgerError):
    """Frozen or closed account (a capture refused this way means: hang the call up)."""

    code = "account_not_active"


class AccountNotEmpty(LedgerError):
    """Close refused: money is still posted or held (refund or settle first)."""

    code = "account_not_empty"


class BadAmount(LedgerError):
    code = "bad_amount"


class BadId(LedgerError):
    code = "bad_id"


class BadInput(LedgerError):
    """Malformed non-id, non-amount input: phone number, reason, meta, call record, lease."""

    code = "bad_input"


class IdConflict(LedgerError):
    """Same operation id with a different payload, or a hold id already used on this account."""

    code = "id_conflict"


class HoldNotPending(LedgerError):
    code = "hold_not_pending"


class ExceedsHold(LedgerError):
    code = "exceeds_hold"


class UnknownHold(LedgerError):
    code = "unknown_hold"


class LedgerUnavailable(LedgerError):
    """Redis down, timing out or refusing writes. The outcome of an in-flight operation is unknown:
    retry it with the same operation id (idempotent) to learn it. `not_applied` is True when the
    request certainly never ran (no connection, or Redis refused it before running any script), so the
    operation is certainly not done (a payment may then be released at once)."""

    code = "ledger_unavailable"
    transient = True

    def __init__(self, message: str = "", *, code: str | None = None, not_applied: bool = False) -> None:
        super().__init__(message, code=code)
        self.not_applied = not_applied


class LedgerInternal(LedgerError):
    """An unexpected reply from Redis (a bug, or someone else's keys in our namespace)."""

    code = "ledger_internal"


ERRORS_BY_CODE: dict[str, type[LedgerError]] = {
    cls.code: cls
    for cls in (InsufficientFunds, UnknownAccount, AccountNotActive, AccountNotEmpty, BadAmount, BadId,
                BadInput, IdConflict, HoldNotPending, ExceedsHold, UnknownHold, LedgerUnavailable,
                LedgerInternal)
}


def error_from_code(code: str, message: str) -> LedgerError:
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return LedgerInternal(f"{code}: {message}")
    return cls(message)
