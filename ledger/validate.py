"""Pure input checks run before anything reaches Redis: bad input is refused and changes nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from ledger.errors import BadAmount, BadId, BadInput

ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_TEXT = 512          # reasons, sources, references, owner names
MAX_META_ITEMS = 16
MAX_META_TEXT = 256
MAX_LEASE_SECONDS = 7 * 86400
# The largest max_amount a Ledger accepts: far above any prepaid payment, and far below 2**53, the point
# where Redis' Lua (doubles) stops counting cents exactly; deposit.lua and adjust.lua also refuse a
# posted balance above 2**53 - 1.
MAX_AMOUNT_CEILING = 10**12


def check_id(value: object, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise BadId(f"malformed {what}: expected 1-128 chars of [A-Za-z0-9._:-], got {value!r:.80}")
    return value


def check_amount(value: object, max_amount: int, what: str = "amount") -> int:
    """A positive integer number of cents no larger than the ceiling; bool, float and str are refused."""
    if type(value) is not int:
        raise BadAmount(f"{what} must be an integer number of cents, got {type(value).__name__}")
    if value <= 0:
        raise BadAmount(f"{what} must be positive, got {value}")
    if value > max_amount:
        raise BadAmount(f"{what} {value} exceeds the ceiling of {max_amount} cents")
    return value


def check_max_amount(value: object) -> int:
    """A configured max_amount (Settings.max_amount): an int in 1..MAX_AMOUNT_CEILING, else ValueError."""
    if type(value) is not int or not 1 <= value <= MAX_AMOUNT_CEILING:
        raise ValueError(f"max_amount must be an integer number of cents in 1..{MAX_AMOUNT_CEILING}"
                         f" (10**12), got {value!r:.40}")
    return value


def check_total(value: object, max_amount: int) -> int:
    """A settle total may be zero (nothing billed) but otherwise obeys the amount rules."""
    if type(value) is int and value == 0:
        return 0
    return check_amount(value, max_amount, "total")


def check_delta(value: object, max_amount: int) -> int:
    if type(value) is not int:
        raise BadAmount(f"delta must be an integer number of cents, got {type(value).__name__}")
    if value == 0:
        raise BadAmount("delta must not be zero")
    check_amount(abs(value), max_amount, "delta")
    return value


def check_e164(value: object) -> str:
    if not isinstance(value, str) or not E164_RE.fullmatch(value):
        raise BadInput(f"not an E.164 number: {value!r:.40}")
    return value


CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_text(value: object, what: str, *, required: bool = False) -> str:
    """Free text (reason, source, owner...): no control characters (the journal separates with \\x1f)."""
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a string")
    if CONTROL_RE.search(value):
        raise BadInput(f"{what} must not contain control characters")
    if required and not value.strip():
        raise BadInput(f"{what} is required")
    if len(value) > MAX_TEXT:
        raise BadInput(f"{what} longer than {MAX_TEXT} characters")
    return value


def check_lease(value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_LEASE_SECONDS:
        raise BadInput(f"lease_seconds must be an integer in 1..{MAX_LEASE_SECONDS}, got {value!r:.40}")
    return value


def meta_json(meta: object) -> str:
    """Canonical JSON of a hold's meta (sorted keys) so the same meta always fingerprints the same."""
    if meta is None:
        return "{}"
    if not isinstance(meta, dict) or len(meta) > MAX_META_ITEMS:
        raise BadInput(f"meta must be a dict of at most {MAX_META_ITEMS} str -> str items")
    for key, val in meta.items():
        if not isinstance(key, str) or not isinstance(val, str) or len(key) > 64 or len(val) > MAX_META_TEXT:
            raise BadInput("meta keys and values must be short strings")
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


CALL_TEXT_FIELDS = ("facility_id", "inmate_id", "dialled", "number_e164", "call_class", "outcome", "reason")
CALL_TIME_FIELDS = ("started_at", "answered_at", "accepted_at", "ended_at")
CALL_FIELDS = ("call_id", "account_id", *CALL_TEXT_FIELDS, *CALL_TIME_FIELDS,
               "billed_seconds", "amount", "recorded", "privileged")


def _utc_iso(value: object, what: str) -> str:
    if value == "":
        return ""
    if not isinstance(value, str):
        raise BadInput(f"{what} must be an ISO-8601 UTC string or empty")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{what} is not ISO-8601: {value!r:.40}") from None
    if parsed.tzinfo is None or parsed.utcoffset() != UTC.utcoffset(None):
        raise BadInput(f"{what} must carry a UTC offset (Z or +00:00)")
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")


def call_record(record: object, max_amount: int) -> dict[str, object]:
    """Validate and normalise a call attempt record; unknown or missing keys are refused."""
    if not isinstance(record, dict):
        raise BadInput("record must be a dict")
    missing = [k for k in CALL_FIELDS if k not in record]
    unknown = [k for k in record if k not in CALL_FIELDS]
    if missing or unknown:
        raise BadInput(f"call record: missing {missing}, unknown {unknown}")
    out: dict[str, object] = {"call_id": check_id(record["call_id"], "call_id")}
    account = record["account_id"]
    out["account_id"] = "" if account == "" else check_id(account, "account_id")
    out["facility_id"] = check_id(record["facility_id"], "facility_id")
    for key in CALL_TEXT_FIELDS[1:]:
        val = record[key]
        if not isinstance(val, str) or len(val) > 128 or CONTROL_RE.search(val):
            raise BadInput(f"call record {key} must be a string of at most 128 characters")
        out[key] = val
    if out["number_e164"]:
        check_e164(out["number_e164"])
    for key in CALL_TIME_FIELDS:
        out[key] = _utc_iso(record[key], key)
    seconds = record["billed_seconds"]
    if type(seconds) is not int or not 0 <= seconds <= 86400:
        raise BadInput("billed_seconds must be an integer in 0..86400")
    out["billed_seconds"] = seconds
    amount = record["amount"]
    out["amount"] = 0 if type(amount) is int and amount == 0 else check_amount(amount, max_amount)
    for key in ("recorded", "privileged"):
        if type(record[key]) is not bool:
            raise BadInput(f"call record {key} must be a bool")
        out[key] = record[key]
    return out
