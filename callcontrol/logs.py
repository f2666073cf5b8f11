"""structlog set-up with a redaction processor.

Card numbers (Luhn-valid runs of 13-19 digits), CVVs, PINs and secrets never reach a log. The redactor
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

MASK = "***"
SENSITIVE_KEYS = re.compile(
    r"(pin|passcode|cvv|cvc|cvv2|secret|password|passwd|card|pan|token|auth)", re.IGNORECASE
)
_KV = re.compile(
    r"(?i)\b(pin|passcode|cvv2?|cvc|secret|password|passwd|card(?:_?number)?|pan|token)"
    r"(\s*[:=]\s*|\s+)(['\"]?)([^\s'\",;&)]+)"
)
_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def redact_text(text: str) -> str:
    """Mask key=value secrets and Luhn-valid card numbers inside free text."""
    text = _KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}", text)

    def card(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return MASK if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)

    return _DIGIT_RUN.sub(card, text)


def redact_value(key: str | None, value: Any) -> Any:
    if key is not None and SENSITIVE_KEYS.search(key) and not isinstance(value, Mapping | list | tuple):
        return MASK if value not in (None, "") else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(None, v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**12:
        return redact_value(None, str(value))
    return value


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k in ("level", "timestamp", "logger") else redact_value(k, v))
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
