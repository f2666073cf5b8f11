"""Spoken numbers, money, rates and durations as lists of our own prompt ids.

The call flows play these with STREAM FILE (one prompt per command) instead of Asterisk's sound packages,
so English and Spanish come from the same catalog and voice. Everything here is pure: the catalog is read
once (ivr_prompts/catalog.toml plus facility files) and every id returned exists in it for that language.

Rounding rule for rates: a per-minute rate is spoken to the cent, rounding half up ($0.125 -> 13 cents).
Money is integer cents; rates are Decimal dollars. A float is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ivr_prompts.catalog import Catalog, facility_prompt_id, load_catalog

DEFAULT_PREFIX = "advancepay"  # /var/lib/asterisk/sounds/advancepay -> ivr_prompts
MAX_NUMBER = 999_999
Gender = Literal["m", "f"] | None


class SpeechError(ValueError):
    """A value cannot be spoken (wrong type, negative, too large) or a language/prompt is unknown."""


class UnknownPrompt(SpeechError, KeyError):
    """The prompt id does not exist in the catalog for that language."""


_facility_dir: Path | None = None  # None: CALLCONTROL_FACILITY_DIR or the repository's facility_data


@lru_cache(maxsize=1)
def _catalog() -> Catalog:
    return load_catalog(facility_dir=_facility_dir)


def reload_catalog(facility_dir: Path | None = None) -> None:
    """Re-read the catalog, e.g. with ``settings.facility_dir`` at start-up or after new facility files."""
    global _facility_dir
    _facility_dir = facility_dir
    _catalog.cache_clear()


def available_languages() -> tuple[str, ...]:
    return _catalog().languages


def catalog_ids(lang: str | None = None) -> frozenset[str]:
    """Prompt ids in the catalog, for one language or for any."""
    if lang is not None:
        _check_lang(lang)
    return _catalog().ids(lang)


def _check_lang(lang: str) -> None:
    if lang not in _catalog().languages:
        raise SpeechError(f"unsupported language {lang!r}; have {list(_catalog().languages)}")


def prompt(prompt_id: str, lang: str, prefix: str = DEFAULT_PREFIX) -> str:
    """STREAM FILE name (no extension) of a prompt, e.g. ``advancepay/en/welcome``."""
    _check_lang(lang)
    if _catalog().get(prompt_id, lang) is None:
        raise UnknownPrompt(f"no prompt {prompt_id!r} in language {lang!r}")
    return f"{prefix.rstrip('/')}/{lang}/{prompt_id}" if prefix else f"{lang}/{prompt_id}"


def prompts(prompt_ids: Iterable[str], lang: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """``prompt`` over a sequence, e.g. the output of ``say_money``."""
    return [prompt(p, lang, prefix) for p in prompt_ids]


def facility_name(facility_id: str, lang: str) -> list[str]:
    """The facility's spoken-name prompt, or the generic "a correctional facility" when it has none."""
    _check_lang(lang)
    pid = facility_prompt_id(facility_id)
    return [pid] if _catalog().get(pid, lang) is not None else ["a_correctional_facility"]


def _check_int(value: object, what: str, maximum: int = MAX_NUMBER) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpeechError(f"{what} must be an int, got {type(value).__name__}")
    if value < 0 or value > maximum:
        raise SpeechError(f"{what} {value} is outside 0..{maximum}")
    return value


# --- English -------------------------------------------------------------------------------------------

def _en_below_1000(n: int) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [f"n_{hundreds}", "hundred"]
    if rest >= 20:
        tens, units = divmod(rest, 10)
        out.append(f"n_{tens * 10}")
        if units:
            out.append(f"n_{units}")
    elif rest or not out:
        out.append(f"n_{rest}")
    return out


def _en_number(n: int) -> list[str]:
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _en_below_1000(n)
    return _en_below_1000(thousands) + ["thousand"] + (_en_below_1000(rest) if rest else [])


# --- Spanish -------------------------------------------------------------------------------------------
# gender None: counting form (uno, veintiuno); "m": before a masculine noun (un dólar, veintiún minutos,
# and always before "mil"); "f": before a feminine noun (una, veintiuna, doscientas).

def _es_below_100(n: int, gender: Gender) -> list[str]:
    if n == 1:
        return {None: ["n_1"], "m": ["un"], "f": ["una"]}[gender]
    if n == 21:
        return {None: ["n_21"], "m": ["veintiun"], "f": ["veintiuna"]}[gender]
    if n < 30:
        return [f"n_{n}"]
    tens, units = divmod(n, 10)
    if not units:
        return [f"n_{n}"]
    return [f"n_{tens * 10}", "y", *_es_below_100(units, gender)]


def _es_below_1000(n: int, gender: Gender) -> list[str]:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _es_below_100(rest, gender)
    if hundreds == 1:
        head = ["cien"] if not rest else ["ciento"]
    else:
        head = [f"n_{hundreds * 100}" + ("_f" if gender == "f" else "")]
    return head + (_es_below_100(rest, gender) if rest else [])


def _es_number(n: int, gender: Gender) -> list[str]:
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _es_below_1000(n, gender)
    head = ["thousand"] if thousands == 1 else [*_es_below_1000(thousands, gender or "m"), "thousand"]
    return head + (_es_below_1000(rest, gender) if rest else [])


# --- Public speakers -----------------------------------------------------------------------------------

def say_number(n: int, lang: str, gender: Gender = None) -> list[str]:
    """Cardinal ``n`` (0..999,999) as prompt ids. ``gender`` matters in Spanish only: "m"/"f" agree the
    number with the noun that follows (un dólar, una llamada); None is the counting form (uno)."""
    _check_lang(lang)
    _check_int(n, "number")
    if gender not in (None, "m", "f"):
        raise SpeechError(f"gender must be None, 'm' or 'f', got {gender!r}")
    return _es_number(n, gender) if lang == "es" else _en_number(n)


def say_digits(digits: str, lang: str) -> list[str]:
    """Digit by digit, for phone numbers and confirmation codes; '*' is star, '#' is pound."""
    _check_lang(lang)
    if not isinstance(digits, str):
        raise SpeechError("digits must be a string")
    names = {"*": "star", "#": "pound"}
    out = []
    for ch in digits:
        if ch in "0123456789":
            out.append(f"digit_{ch}")
        elif ch in names:
            out.append(names[ch])
        else:
            raise SpeechError(f"cannot say {ch!r} as a digit")
    return out


def _counted(n: int, lang: str, one: str, many: str) -> list[str]:
    """``n`` followed by a masculine unit noun, singular only for exactly one."""
    return [*say_number(n, lang, gender="m"), one if n == 1 else many]


def say_money(cents: int, lang: str) -> list[str]:
    """"twelve dollars and five cents", "one dollar", "nine cents", "zero dollars"; in Spanish
    "doce dólares con cinco centavos", "un dólar"."""
    _check_lang(lang)
    _check_int(cents, "amount in cents", maximum=MAX_NUMBER * 100 + 99)
    dollars, rest = divmod(cents, 100)
    if not dollars and not rest:
        return ["n_0", "dollars"]
    out: list[str] = []
    if dollars:
        out += _counted(dollars, lang, "dollar", "dollars")
    if rest:
        if out:
            out.append("con" if lang == "es" else "and")
        out += _counted(rest, lang, "cent", "cents")
    return out


def rate_cents(dollars_per_minute: Decimal | int) -> int:
    """A per-minute rate rounded to the cent as spoken: half up. Decimal or int only, never float."""
    if isinstance(dollars_per_minute, bool) or not isinstance(dollars_per_minute, Decimal | int):
        raise SpeechError(f"rate must be a Decimal, got {type(dollars_per_minute).__name__}")
    rate = Decimal(dollars_per_minute)
    if not rate.is_finite() or rate < 0:
        raise SpeechError(f"rate {rate} must be a finite, non-negative amount")
    return int((rate * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def say_rate(dollars_per_minute: Decimal | int, lang: str) -> list[str]:
    """"nine cents per minute"; whole cents, rounded half up (see ``rate_cents``)."""
    _check_lang(lang)
    cents = rate_cents(dollars_per_minute)
    spoken = ["n_0", "cents"] if cents == 0 else say_money(cents, lang)
    return [*spoken, "per_minute"]


def say_duration(seconds: int, lang: str) -> list[str]:
    """"one minute and thirty seconds", "fifteen minutes", "zero seconds" (no hours: calls are short)."""
    _check_lang(lang)
    _check_int(seconds, "duration in seconds", maximum=MAX_NUMBER * 60 + 59)
    minutes, secs = divmod(seconds, 60)
    out: list[str] = []
    if minutes:
        out += _counted(minutes, lang, "minute", "minutes")
    if secs or not minutes:
        if out:
            out.append("and")
        out += _counted(secs, lang, "second", "seconds")
    return out
