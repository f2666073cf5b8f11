"""Dialled-string normalization and number lookup (validity, type, region, US state).

The reference (slow) path is plain phonenumbers: parse "+<digits>", is_valid_number, number_type,
region_code_for_number. The fast paths give the same answers for less: they apply phonenumbers' own
metadata patterns, compiled once, in the order phonenumbers uses for region lookup and typing (once,
where the reference runs them two or three times); NANP numbers also skip parsing, since "1" + 10
digits already are the country code and the national number. Tests hold fast == slow. Results are
cached per number.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import REGION_CODE_FOR_NON_GEO_ENTITY as NON_GEO
from phonenumbers import PhoneMetadata, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, NumberParseException

from rating.errors import NumberRefused
from rating.usgeo import US_REGIONS, npa_states

MAX_INPUT_CHARS = 40      # longer dialled strings (once trimmed) are refused before parsing ("too_long")
MAX_E164_DIGITS = 15      # ITU-T E.164 maximum, country code included
CACHE_SIZE = 65_536

TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
# Types a facility may block by policy (premium_rate and toll_free are refused everywhere).
BLOCKABLE_TYPES = (
    "shared_cost", "uan", "voicemail", "personal_number", "pager", "voip", "mobile", "fixed_line_or_mobile",
    "fixed_line",
)
_FORMAT_CHARS = str.maketrans("", "", " -()")


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """What phonenumbers says about one number, independent of the facility calling it."""

    e164: str                 # "+13128681234"; for invalid numbers the "+digits" that was looked up
    valid: bool
    country_code: int
    region: str | None        # ISO 3166 region ("US", "MX", "PR"), None when invalid
    number_type: str          # a TYPE_NAMES value
    npa: str | None           # area code for NANP numbers
    state: str | None         # USPS code for US states/DC and US territories (PR, GU, ...)


def normalize(dialled: object) -> str:
    """Dialled string -> E.164 digits without "+". Accepts 10 digits, 1+10, 011+international, +E.164,
    with spaces, dashes and parentheses; refuses everything else with NumberRefused."""
    if not isinstance(dialled, str):
        raise NumberRefused("invalid", "the dialled number must be text")
    s = dialled.strip()
    if len(s) > MAX_INPUT_CHARS:
        raise NumberRefused("too_long", f"dialled string longer than {MAX_INPUT_CHARS} characters")
    s = s.translate(_FORMAT_CHARS)
    if s.startswith("+"):
        digits = s[1:]
    elif s.startswith("011"):
        digits = s[3:]
    else:
        digits = ""
        if s.isascii() and s.isdigit():
            if len(s) == 10:
                digits = "1" + s
            elif len(s) == 11 and s[0] == "1":
                digits = s
            elif len(s) <= 6:
                raise NumberRefused("short_code", f"{s!r} is a short code (N11, emergency or service number)")
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise NumberRefused(
            "invalid", "dial 10 digits, 1 + 10 digits, 011 + international number, or +E.164"
        )
    if len(digits) > MAX_E164_DIGITS:
        raise NumberRefused("too_long", f"more than {MAX_E164_DIGITS} digits")
    return digits


def _invalid(digits: str, cc: int = 0) -> NumberInfo:
    return NumberInfo("+" + digits, False, cc, None, "unknown", None, None)


def _finish(e164: str, cc: int, region: str | None, type_name: str) -> NumberInfo:
    npa = e164[2:5] if cc == 1 else None
    state = None
    if region in US_REGIONS:
        state = npa_states().get(npa or "") if region == "US" else region
    return NumberInfo(e164, True, cc, region, type_name, npa, state)


def lookup_slow(digits: str) -> NumberInfo:
    """Reference path: phonenumbers.parse + is_valid_number + number_type."""
    try:
        num = phonenumbers.parse("+" + digits, None)
    except NumberParseException:
        return _invalid(digits)
    cc = num.country_code or 0          # (parse always sets it)
    if not phonenumbers.is_valid_number(num):
        return _invalid(digits, cc)
    region = phonenumbers.region_code_for_number(num)
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return _finish(e164, cc, region, TYPE_NAMES[phonenumbers.number_type(num)])


Check = tuple[frozenset[int], "re.Pattern[str]"]   # (possible lengths or empty = any, pattern)


def _check(desc: object) -> Check | None:
    """A PhoneNumberDesc as (lengths, compiled pattern); None when it can never match."""
    pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
    if not pattern:
        return None
    return frozenset(getattr(desc, "possible_length", None) or ()), re.compile(pattern)


def _matches(check: Check | None, nn: str) -> bool:
    if check is None:
        return False
    lengths, pattern = check
    if lengths and len(nn) not in lengths:
        return False
    return pattern.fullmatch(nn) is not None


_SPECIAL_TYPES = (
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
)


class _Region:
    """One region's metadata, compiled once."""

    def __init__(self, code: str, md: PhoneMetadata) -> None:
        self.code = code
        self.leading = re.compile(md.leading_digits) if md.leading_digits else None
        self.general = _check(md.general_desc)
        specials = ((name, _check(getattr(md, name, None))) for name in _SPECIAL_TYPES)
        self.specials = tuple((name, c[0], c[1]) for name, c in specials if c is not None)
        self.fixed = _check(md.fixed_line)
        self.mobile = _check(md.mobile)
        self.same = bool(md.same_mobile_and_fixed_line_pattern)

    def type_of(self, nn: str) -> str:
        """phonenumbers' number-type rules: general pattern, then special types in order, then
        fixed line / mobile."""
        if not _matches(self.general, nn):
            return "unknown"
        size = len(nn)
        for name, lengths, pattern in self.specials:
            if (not lengths or size in lengths) and pattern.fullmatch(nn) is not None:
                return name
        if _matches(self.fixed, nn):
            return "fixed_line_or_mobile" if self.same or _matches(self.mobile, nn) else "fixed_line"
        if not self.same and _matches(self.mobile, nn):
            return "mobile"
        return "unknown"


@functools.cache
def _regions(country_code: int) -> tuple[_Region, ...]:
    out = []
    for code in COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        if code == NON_GEO:
            md = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
        else:
            md = PhoneMetadata.metadata_for_region(code, None)
        if md is not None:
            out.append(_Region(code, md))
    return tuple(out)


def _region_and_type(country_code: int, nsn: str) -> tuple[str, str] | None:
    """phonenumbers' region_code_for_number + number_type, on precompiled patterns.

    Several regions share a code: the first whose leading digits match, or (regions without
    leading digits) whose patterns give the number a type, owns it. Invalid: None.
    """
    regions = _regions(country_code)
    if not regions:
        return None
    if len(regions) == 1:
        found = regions[0]
    else:
        for region in regions:
            if region.leading is None:
                type_name = region.type_of(nsn)
                if type_name != "unknown":
                    return region.code, type_name
            elif region.leading.match(nsn):
                found = region
                break
        else:
            return None
    type_name = found.type_of(nsn)
    return None if type_name == "unknown" else (found.code, type_name)


def lookup_nanp(digits: str) -> NumberInfo:
    """Fast path for "1" + 10 digits: no parsing, the digits already are country code + national number."""
    found = _region_and_type(1, digits[1:])
    if found is None:
        return _invalid(digits, 1)
    return _finish("+" + digits, 1, *found)


def lookup_international(digits: str) -> NumberInfo:
    """phonenumbers.parse (country code, national prefix, leading zeros), then precompiled typing."""
    try:
        num = phonenumbers.parse("+" + digits, None)
    except NumberParseException:
        return _invalid(digits)
    cc = num.country_code or 0          # (parse always sets it)
    nsn = phonenumbers.national_significant_number(num)
    found = _region_and_type(cc, nsn)
    if found is None:
        return _invalid(digits, cc)
    return _finish(f"+{cc}{nsn}", cc, *found)


@functools.lru_cache(maxsize=CACHE_SIZE)
def lookup(digits: str) -> NumberInfo:
    """Cached lookup of E.164 digits; NANP numbers skip parsing altogether."""
    if len(digits) == 11 and digits[0] == "1":
        return lookup_nanp(digits)
    return lookup_international(digits)


def refuse_by_policy(info: NumberInfo, blocked_types: frozenset[str]) -> None:
    """Raise NumberRefused unless the number may be called from a facility blocking `blocked_types`."""
    if not info.valid:
        raise NumberRefused("invalid", f"{info.e164} is not a valid telephone number")
    kind = info.number_type
    if kind == "premium_rate":
        raise NumberRefused("premium", f"{info.e164} is a premium-rate number")
    if kind == "toll_free":
        raise NumberRefused("toll_free",
                            f"{info.e164} is toll-free; AdvancePay cannot fund a toll-free number")
    if kind in blocked_types:
        raise NumberRefused("blocked_type", f"{info.e164} is a {kind.replace('_', '-')} number, blocked here")
