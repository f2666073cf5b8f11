"""A holder's profile and the rules for each field (bad input is refused before anything is written)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers

from holders.errors import BadInput

LANGUAGES = ("en", "es")
STATUSES = ("active", "locked", "closed")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Holder:
    holder_id: str
    name: str
    email: str
    mobile: str
    language: str
    time_zone: str
    status: str
    created_ts: int
    updated_ts: int
    address: str = ""        # postal address, for a refund owed by check; "" unknown


def check_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or _CONTROL.search(value):
        raise BadInput("name: 1-200 printable characters")
    return value.strip()


def check_address(value: object) -> str:
    """A postal address: 1-400 characters, lines separated by newlines, no other control characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > 400 or any(
            _CONTROL.search(line) for line in value.strip().split("\n")):
        raise BadInput("address: 1-400 printable characters (lines separated by newlines)")
    return value.strip()


def check_email(value: object) -> str:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value.strip()):
        raise BadInput(f"not an email address: {str(value)[:60]!r}")
    return value.strip()


def email_key(email: str) -> str:
    return email.strip().lower()


def check_number(value: object, what: str = "number") -> str:
    """A valid E.164 number (+ and digits, a real numbering plan)."""
    if not isinstance(value, str) or not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
        raise BadInput(f"{what}: not an E.164 number (+13125550100): {str(value)[:20]!r}")
    if not phonenumbers.is_valid_number(phonenumbers.parse(value)):
        raise BadInput(f"{what}: {value} is not a valid phone number")
    return value


def check_language(value: object) -> str:
    if value not in LANGUAGES:
        raise BadInput(f"language: one of {', '.join(LANGUAGES)}")
    return str(value)


def check_time_zone(value: object) -> str:
    if not isinstance(value, str) or value not in available_timezones():
        raise BadInput(f"time zone: not an IANA zone: {str(value)[:64]!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadInput(f"time zone: {value!r}: {exc}") from None
    return value


def check_status(value: object) -> str:
    if value not in STATUSES:
        raise BadInput(f"status: one of {', '.join(STATUSES)}")
    return str(value)
