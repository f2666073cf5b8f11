"""structlog set-up with a redaction processor.

Card numbers (Luhn-valid runs of 13-19 digits, spaced or not, alone or run together with an expiry),
expiry dates, CVVs, PINs and secrets never reach a log. The redactor
runs last before rendering, after exception formatting, so tracebacks are scrubbed too, and tracebacks
never include local variables.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

from payments.cards import luhn_ok

MASK = "***"
# Names whose values are secret. Broad on purpose for AGI variable names (agi.py skips the debug lines
# of commands that touch them); log keys use _LOG_KEY, which matches at the start of a word so that
# `company`, `mapping` or `discard` stay readable while `card_number`, `cvv2` or `ami_secret` do not.
SENSITIVE_KEYS = re.compile(
    r"(pin|passcode|cvv|cvc|cvv2|secret|password|passwd|card|pan|token|auth)", re.IGNORECASE
)
_LOG_KEY = re.compile(
    r"(?i)(?:^|[^a-z])(?:pin|passcode|cvv|cvc|secret|passw|card|pan(?![a-z])|token|auth"
    r"|exp(?:iry|iration|ires)?(?![a-z]))"
)
# One-time codes: `code`, `otp` and names ending in them (`verification_code`, `dev_code`), but not
# `status_code` or `error_code`. Only the development sender's `dev_code` event shows its code.
_CODE_KEY = re.compile(r"(?i)^(?:code|otp|\w*_otp|\w*(?:one_time|verification|dev)_code)$")
DEV_CODE_EVENT = "dev_code"
_KV = re.compile(
    r"(?i)\b(pin|passcode|cvv2?|cvc|secret|password|passwd|card(?:_?number)?|pan|token"
    r"|exp(?:iry|iration)?(?:_?date)?|mmyy)"
    r"(\s*[:=]\s*|\s+)(['\"]?)([^\s'\",;&)]+)"
)
# Digit runs that may hold a card number: 13-19 digits, spaced or dashed in groups, or run together
# with an expiry or CVV after them (up to 23 digits).
_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,22}\d(?!\d)")


def _holds_card(digits: str) -> bool:
    """A Luhn-valid card number of 13-19 digits, alone or followed by up to 4 more (expiry, CVV); or any
    run of 16-19 digits, which is a card's length even when mistyped (nothing else we log is that long:
    E.164 numbers and Asterisk thread ids stop at 15, ms timestamps at 13)."""
    if 16 <= len(digits) <= 19:
        return True
    return any(luhn_ok(digits[:n]) for n in range(13, min(19, len(digits)) + 1) if len(digits) - n <= 4)


def redact_text(text: str) -> str:
    """Mask card numbers (first, so a spaced number after "card" goes whole) and key=value secrets."""

    def card(m: re.Match[str]) -> str:
        return MASK if _holds_card(re.sub(r"\D", "", m.group(0))) else m.group(0)

    text = _DIGIT_RUN.sub(card, text)
    return _KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}", text)


def redact_value(key: str | None, value: Any, *, secret: bool = False) -> Any:
    """`secret`: under a sensitive key, every leaf is masked, however deep (a CVV in a list too)."""
    secret = secret or (key is not None and (_LOG_KEY.search(key) or _CODE_KEY.match(key)) is not None)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v, secret=secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(None, v, secret=secret) for v in value)
    if secret:
        return MASK if value not in (None, "") else value
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**12:
        return redact_value(None, str(value))
    return value


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    dev = event_dict.get("event") == DEV_CODE_EVENT
    return {k: (v if k in ("level", "timestamp", "logger") or (dev and k == DEV_CODE_EVENT)
                else redact_value(k, v))
            for k, v in event_dict.items()}


class _CurrentStderr:
    """Writes to whatever sys.stderr is now, so a replaced stream (tests, daemons) never goes stale."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(fmt: str = "", level: str = "info", stream: Any = None) -> None:
    """JSON in production, readable console in development. Safe to call more than once."""
    stream = stream or _CurrentStderr()
    if not fmt:
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        tail: list[Any] = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_processor,
            structlog.processors.JSONRenderer(),
        ]
    else:
        tail = [
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ]
    structlog.configure(
        processors=shared + tail,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
