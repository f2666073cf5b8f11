"""Card-entry checks (pure): number (Luhn), expiry, CVV."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CARD_MIN_DIGITS = 13
CARD_MAX_DIGITS = 19
EXPIRY_MAX_YEARS_AHEAD = 20
# A card is valid through the last day of its month wherever the caller is: the month is judged at
# UTC-12, the last zone to leave it (every inhabited US place ends it earlier: American Samoa, UTC-11).
LAST_ZONE = timezone(timedelta(hours=-12))


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


def card_number_ok(digits: str | None) -> bool:
    """13-19 ASCII digits passing the Luhn check."""
    return (isinstance(digits, str) and digits.isascii() and digits.isdigit()
            and CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS and luhn_ok(digits))


def is_amex(card: str) -> bool:
    return len(card) == 15 and card[:2] in ("34", "37")


def cvv_ok(cvv: str | None, card: str) -> bool:
    """Four digits for American Express, three for every other brand."""
    want = 4 if is_amex(card) else 3
    return isinstance(cvv, str) and cvv.isascii() and cvv.isdigit() and len(cvv) == want


def expiry_problem(mmyy: str | None, now: datetime) -> str | None:
    """None when MMYY is a real month not yet over at ``now`` anywhere (a card is valid through the last
    day of its expiry month, judged at UTC-12) and not absurdly far ahead; else "malformed" or
    "expired"."""
    if not (isinstance(mmyy, str) and len(mmyy) == 4 and mmyy.isascii() and mmyy.isdigit()):
        return "malformed"
    month, year = int(mmyy[:2]), 2000 + int(mmyy[2:])
    if not 1 <= month <= 12:
        return "malformed"
    now = now.astimezone(LAST_ZONE)
    if (year, month) < (now.year, now.month):
        return "expired"
    if year > now.year + EXPIRY_MAX_YEARS_AHEAD:
        return "malformed"
    return None


def brand(card: str) -> str:
    """The card network from the leading digits (IIN ranges), for display next to the last four."""
    if is_amex(card):
        return "amex"
    if card[:1] == "4":
        return "visa"
    two, four = int(card[:2] or 0), int(card[:4] or 0)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if card[:4] == "6011" or card[:2] == "65" or 644 <= int(card[:3] or 0) <= 649:
        return "discover"
    return "other"


def expiry_parts(mmyy: str) -> tuple[int, int]:
    """(month, four-digit year) of a checked MMYY."""
    return int(mmyy[:2]), 2000 + int(mmyy[2:])
