"""Holder errors: a machine-readable `.code`; the CLI maps NotFound to 1, the rest to 2 (3: unavailable)."""

from __future__ import annotations


class HolderError(Exception):
    code = "holder_error"


class BadInput(HolderError):
    code = "bad_input"


class NotFound(HolderError):
    """Also what another holder's data looks like: a holder never learns that it exists."""
    code = "not_found"


class AlreadyClaimed(HolderError):
    code = "already_claimed"


class RateLimited(HolderError):
    code = "rate_limited"


class CodeRefused(HolderError):
    """Wrong, expired, used or locked code: nothing is linked."""
    code = "code_refused"


class NotActive(HolderError):
    code = "holder_not_active"


class Unavailable(HolderError):
    """No code sender configured, delivery failed, or the ledger could not be reached: nothing linked."""
    code = "unavailable"
