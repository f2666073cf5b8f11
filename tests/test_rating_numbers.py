"""Dialled-number normalization and classification: forms, refusals, NANP fast path == slow path."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import CallClass, Catalog, NumberRefused, load_catalog
from rating import numbers as nums
from rating.usgeo import npa_states, state_of_description
from tests.test_rating_catalog import FACILITY, write_catalog

NOON = dt.datetime(2026, 1, 5, 12, 0, tzinfo=ZoneInfo("America/Chicago"))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    # blocks its default types plus pager and voip (FACILITY has no blocked_number_types: defaults apply)
    fac2 = (FACILITY.replace('id = "FAC-T1"', 'id = "FAC-T2"')
            + '\n').replace("[calling_hours]", 'blocked_number_types = ["pager", "voip"]\n\n[calling_hours]')
    return load_catalog(write_catalog(tmp_path_factory.mktemp("num"),
                                      facilities={"t1.toml": FACILITY, "t2.toml": fac2}))


def example(region: str, kind: phonenumbers.PhoneNumberType) -> str:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@pytest.mark.parametrize(("dialled", "e164", "klass", "region", "state"), [
    ("(312) 868-1234", "+13128681234", "local", "US", "IL"),
    ("3128681234", "+13128681234", "local", "US", "IL"),
    ("1-312-868-1234", "+13128681234", "local", "US", "IL"),
    ("+1 312 868 1234", "+13128681234", "local", "US", "IL"),
    ("011 1 312 868 1234", "+13128681234", "local", "US", "IL"),
    ("  773-555-0123 ", "+17735550123", "local", "US", "IL"),
    ("217 555 0147", "+12175550147", "intrastate", "US", "IL"),
    ("+12125550182", "+12125550182", "interstate", "US", "NY"),
    ("202-987-6543", "+12029876543", "interstate", "US", "DC"),
    ("787 555 0123", "+17875550123", "interstate", "PR", "PR"),      # US territory: domestic
    ("671-555-0123", "+16715550123", "interstate", "GU", "GU"),
    ("+1 416 555 0123", "+14165550123", "international", "CA", None),  # Canada: international
    ("876-555-0123", "+18765550123", "international", "JM", None),   # NANP Caribbean: international
    ("011 52 55 1234 5678", "+525512345678", "international", "MX", None),
    ("+44 (0)20 7946 0958", "+442079460958", "international", "GB", None),
    ("011-33-1-42-68-53-00", "+33142685300", "international", "FR", None),
])
def test_classification(catalog: Catalog, dialled: str, e164: str, klass: str, region: str,
                        state: str | None) -> None:
    dest = catalog.classify("FAC-T1", dialled)
    assert (dest.e164, dest.call_class, dest.region, dest.state) == (e164, CallClass(klass), region, state)


@pytest.mark.parametrize(("dialled", "code"), [
    ("911", "short_code"), ("411", "short_code"), ("611", "short_code"), ("0", "short_code"),
    ("112", "short_code"), ("22333", "short_code"),
    ("1-800-555-0100", "toll_free"), ("(888) 555-0100", "toll_free"), ("+448001234567", "toll_free"),
    ("1-900-555-0100", "premium"), ("+449012345678", "premium"),
    ("500-234-5678", "blocked_type"),                          # US personal number (5XX), default block
    ("+447012345678", "blocked_type"),                         # GB personal number
    ("+445512345678", "blocked_type"),                         # GB UAN
    ("+33884012345", "blocked_type"),                          # FR shared cost
    ("+49177991234567", "blocked_type"),                       # DE voicemail
    ("", "invalid"), ("   ", "invalid"), ("abc", "invalid"), ("312-868-123", "invalid"),
    ("312.868.1234", "invalid"), ("312/868/1234", "invalid"), ("1 312 868 12345", "invalid"),
    ("2 312 868 1234", "invalid"), ("+", "invalid"), ("++13128681234", "invalid"), ("011", "invalid"),
    ("+1 111 555 0123", "invalid"), ("911-555-0123", "invalid"), ("+999 1234 5678", "invalid"),
    ("３１２８６８１２３４", "invalid"),                        # full-width digits
    ("+1312868123４", "invalid"), ("312-868-1234 ext 5", "invalid"), ("*67 312 868 1234", "invalid"),
    ("+1234567890123456", "too_long"), ("011 1234567890123456", "too_long"),
    ("1" * 41, "too_long"), ("3" * 10_000, "too_long"), (" " * 10_000, "invalid"),
    ("٣١٢٨٦٨١٢٣٤", "invalid"), ("+١٣١٢٨٦٨١٢٣٤", "invalid"),   # Arabic-Indic digits
])
def test_refusals(catalog: Catalog, dialled: str, code: str) -> None:
    with pytest.raises(NumberRefused) as info:
        catalog.classify("FAC-T1", dialled)
    assert info.value.code == code
    with pytest.raises(NumberRefused):
        catalog.quote("FAC-T1", dialled, NOON)


@pytest.mark.parametrize("dialled", ["3128681234" + " " * 41, " " * 41 + "+1 312 868 1234\t\n"])
def test_surrounding_whitespace_does_not_count_towards_the_length(catalog: Catalog, dialled: str) -> None:
    assert catalog.classify("FAC-T1", dialled).e164 == "+13128681234"


def test_example_numbers_really_have_the_types_the_refusal_table_assumes() -> None:
    T = phonenumbers.PhoneNumberType
    assert example("GB", T.PERSONAL_NUMBER) == "+447012345678"
    assert example("GB", T.UAN) == "+445512345678"
    assert example("FR", T.SHARED_COST) == "+33884012345"
    assert example("DE", T.VOICEMAIL) == "+49177991234567"


def test_facility_blocked_types_are_facility_specific(catalog: Catalog) -> None:
    pager = "+447640123456"
    voip = "+445612345678"
    assert catalog.classify("FAC-T1", pager).number_type == "pager"        # allowed at FAC-T1
    assert catalog.classify("FAC-T1", voip).number_type == "voip"
    for number in (pager, voip):
        with pytest.raises(NumberRefused) as info:
            catalog.classify("FAC-T2", number)
        assert info.value.code == "blocked_type"
    # FAC-T2 lists its own set, so personal numbers are no longer blocked there
    assert catalog.classify("FAC-T2", "+447012345678").number_type == "personal_number"


def test_non_text_input_is_refused(catalog: Catalog) -> None:
    for bad in (None, 3128681234, b"3128681234"):
        with pytest.raises(NumberRefused) as info:
            catalog.classify("FAC-T1", bad)  # type: ignore[arg-type]
        assert info.value.code == "invalid"


def test_npa_state_map_comes_from_phonenumbers_geocoder() -> None:
    states = npa_states()
    assert states["312"] == states["217"] == "IL" and states["212"] == "NY" and states["202"] == "DC"
    assert "416" not in states and "800" not in states      # Canada and non-geographic: no US state
    from phonenumbers import geocoder
    for npa, state in states.items():
        num = phonenumbers.parse(f"+1{npa}2345678")
        text = geocoder.description_for_number(num, "en")
        assert text == "" or state_of_description(text) == state, (npa, state, text)


# -- fast path == slow path -----------------------------------------------------------------------
OTHER_NPAS = ["787", "939", "671", "340", "684", "670", "416", "604", "876", "809", "800", "888", "900",
              "500", "533", "710", "600", "911", "555", "111"]
KNOWN_NPAS = [*sorted(npa_states()), *OTHER_NPAS]
nanp_digits = st.one_of(
    st.text("0123456789", min_size=10, max_size=10),
    st.tuples(st.sampled_from(KNOWN_NPAS), st.text("0123456789", min_size=7, max_size=7)).map("".join),
)
FAST = settings(max_examples=800, deadline=None)


def test_nanp_fast_path_equals_slow_path_for_every_area_code() -> None:
    """Deterministic sweep: every NPA 000-999 with a few subscriber numbers, incl. 555-01xx."""
    for npa in range(1000):
        for rest in ("2345678", "5550123", "0123456", "9876543", "1234567", "5550199"):
            digits = f"1{npa:03d}{rest}"
            assert nums.lookup_nanp(digits) == nums.lookup_slow(digits), digits


@FAST
@given(nanp_digits)
def test_nanp_fast_path_equals_phonenumbers_slow_path(national: str) -> None:
    assert nums.lookup_nanp("1" + national) == nums.lookup_slow("1" + national)


def test_international_fast_path_equals_slow_path_on_every_example_number() -> None:
    """phonenumbers' example number of every type in every region (and non-geographic code)."""
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    checked = 0
    for cc, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            for kind in nums.TYPE_NAMES:
                if region == "001":
                    num = phonenumbers.example_number_for_non_geo_entity(cc)
                else:
                    num = phonenumbers.example_number_for_type(region, kind)
                if num is None:
                    continue
                digits = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)[1:]
                for variant in (digits, digits[:-1], digits + "0"):
                    assert nums.lookup_international(variant) == nums.lookup_slow(variant), variant
                checked += 1
    assert checked > 1000


CODES = sorted(c for c in __import__("phonenumbers").phonenumberutil.COUNTRY_CODE_TO_REGION_CODE if c != 1)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(CODES), st.text("0123456789", min_size=4, max_size=13))
def test_international_fast_path_equals_slow_path(cc: int, rest: str) -> None:
    digits = f"{cc}{rest}"
    assert nums.lookup_international(digits) == nums.lookup_slow(digits)


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.sampled_from(KNOWN_NPAS[:200]), st.sampled_from("23456789"),
                 st.text("0123456789", min_size=6, max_size=6)).map("".join),
       st.data())
def test_every_dialled_form_gives_the_same_class_and_price(catalog: Catalog, national: str,
                                                           data: st.DataObject) -> None:
    info = nums.lookup_slow("1" + national)
    if not info.valid or info.number_type in ("premium_rate", "toll_free", "personal_number"):
        return
    a, b, c = national[:3], national[3:6], national[6:]
    forms = [national, "1" + national, f"({a}) {b}-{c}", f"1-{a}-{b}-{c}", f"+1 {a} {b} {c}",
             f"011 1 {a} {b} {c}", f"+1({a}){b}{c}", f" {a} - {b} - {c} "]
    quotes = [catalog.quote("FAC-T1", data.draw(st.sampled_from(forms)), NOON) for _ in range(3)]
    quotes.append(catalog.quote("FAC-T1", "+1" + national, NOON))
    first = quotes[0]
    for q in quotes:
        assert q.destination == first.destination
        assert q.rate_per_minute == first.rate_per_minute
        assert (q.cost(61), q.minimum_to_connect) == (first.cost(61), first.minimum_to_connect)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["+525512345678", "+442079460958", "+33142685300", "+8613800138000",
                        "+14165550123", "+61291234567"]), st.data())
def test_international_forms_agree(catalog: Catalog, e164: str, data: st.DataObject) -> None:
    digits = e164[1:]
    cut = data.draw(st.integers(1, len(digits) - 1))
    head, tail = digits[:cut], digits[cut:]
    forms = ["+" + digits, "011" + digits, f"+{head} {tail}", f"011-{head}-{tail}", f"+({head}) {tail}"]
    dests = {catalog.classify("FAC-T1", f) for f in forms}
    assert len(dests) == 1


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_garbage_never_crashes(catalog: Catalog, text: str) -> None:
    try:
        dest = catalog.classify("FAC-T1", text)
    except NumberRefused as exc:
        assert exc.code in {"invalid", "premium", "toll_free", "short_code", "blocked_type", "too_long"}
    else:
        assert dest.e164.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(dest.e164))


def test_cache_is_used_and_bounded() -> None:
    nums.lookup.cache_clear()
    nums.lookup("13128681234")
    nums.lookup("13128681234")
    info = nums.lookup.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, nums.CACHE_SIZE)
