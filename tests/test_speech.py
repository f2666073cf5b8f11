"""callcontrol.speech: numbers, money, rates and durations as our own prompt ids, in English and Spanish.

Property tests read the id lists back into numbers, so a wrong or missing word fails, and check that every
id exists in the catalog for that language."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol import speech
from ivr_prompts import load_catalog

LANGS = ("en", "es")
CATALOG = load_catalog()
fast = settings(max_examples=150, deadline=None)


def text(ids: list[str], lang: str) -> str:
    return " ".join(CATALOG.get(i, lang).text for i in ids)


def assert_known(ids: list[str], lang: str) -> None:
    for prompt_id in ids:
        assert speech.prompt(prompt_id, lang) == f"advancepay/{lang}/{prompt_id}"


VALUES = {"cien": 100, "ciento": 100, "un": 1, "una": 1, "veintiun": 21, "veintiuna": 21}


def read_number(ids: list[str]) -> int:
    """Inverse of say_number for both languages."""
    total = group = 0
    for i in ids:
        if i == "thousand":
            total += (group or 1) * 1000
            group = 0
        elif i == "hundred":
            group *= 100
        elif i == "y":
            continue
        elif i in VALUES:
            group += VALUES[i]
        else:
            assert i.startswith("n_"), i
            group += int(i.removeprefix("n_").removesuffix("_f"))
    return total + group


# --- numbers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "en", "es"), [
    (0, "zero", "cero"),
    (7, "seven", "siete"),
    (16, "sixteen", "dieciséis"),
    (21, "twenty one", "veintiuno"),
    (31, "thirty one", "treinta y uno"),
    (100, "one hundred", "cien"),
    (101, "one hundred one", "ciento uno"),
    (500, "five hundred", "quinientos"),
    (999, "nine hundred ninety nine", "novecientos noventa y nueve"),
    (1000, "one thousand", "mil"),
    (21000, "twenty one thousand", "veintiún mil"),
    (100100, "one hundred thousand one hundred", "cien mil cien"),
    (101001, "one hundred one thousand one", "ciento un mil uno"),
    (999999, "nine hundred ninety nine thousand nine hundred ninety nine",
     "novecientos noventa y nueve mil novecientos noventa y nueve"),
])
def test_say_number_examples(n, en, es):
    assert text(speech.say_number(n, "en"), "en") == en
    assert text(speech.say_number(n, "es"), "es") == es


@pytest.mark.parametrize(("n", "masc", "fem"), [
    (1, "un", "una"),
    (21, "veintiún", "veintiuna"),
    (41, "cuarenta y un", "cuarenta y una"),
    (201, "doscientos un", "doscientas una"),
    (1001, "mil un", "mil una"),
])
def test_spanish_gender_forms(n, masc, fem):
    assert text(speech.say_number(n, "es", gender="m"), "es") == masc
    assert text(speech.say_number(n, "es", gender="f"), "es") == fem


@fast
@given(n=st.integers(0, speech.MAX_NUMBER), lang=st.sampled_from(LANGS),
       gender=st.sampled_from([None, "m", "f"]))
def test_say_number_reads_back_and_exists(n, lang, gender):
    ids = speech.say_number(n, lang, gender=gender)
    assert_known(ids, lang)
    assert read_number(ids) == n
    if lang == "es" and gender is None:
        assert not {"un", "una", "veintiun", "veintiuna"} & set(ids[-1:]), "counting form ends in uno"


@pytest.mark.parametrize("bad", [-1, speech.MAX_NUMBER + 1, True, 1.0, "12", Decimal(3)])
def test_say_number_rejects_bad_input(bad):
    with pytest.raises(speech.SpeechError):
        speech.say_number(bad, "en")


def test_digits_and_keys():
    assert speech.say_digits("5551*#0", "en") == [
        "digit_5", "digit_5", "digit_5", "digit_1", "star", "pound", "digit_0"]
    assert text(speech.say_digits("12#", "es"), "es") == "uno dos numeral"
    for bad in ("12-3", "+1", "a"):
        with pytest.raises(speech.SpeechError):
            speech.say_digits(bad, "en")


# --- money, rates, durations ------------------------------------------------------------------------------

@pytest.mark.parametrize(("cents", "en", "es"), [
    (1205, "twelve dollars and five cents", "doce dólares con cinco centavos"),
    (100, "one dollar", "un dólar"),
    (9, "nine cents", "nueve centavos"),
    (0, "zero dollars", "cero dólares"),
    (1, "one cent", "un centavo"),
    (101, "one dollar and one cent", "un dólar con un centavo"),
    (2121, "twenty one dollars and twenty one cents", "veintiún dólares con veintiún centavos"),
    (5000, "fifty dollars", "cincuenta dólares"),
    (100000, "one thousand dollars", "mil dólares"),
])
def test_say_money_examples(cents, en, es):
    assert text(speech.say_money(cents, "en"), "en") == en
    assert text(speech.say_money(cents, "es"), "es") == es


def read_money(ids: list[str], lang: str) -> int:
    joiner = "con" if lang == "es" else "and"
    if ids == ["n_0", "dollars"]:
        return 0
    cents = 0
    for part in " ".join(ids).split(f" {joiner} "):
        words = part.split()
        unit, number = words[-1], read_number(words[:-1])
        assert unit in ("dollar", "dollars", "cent", "cents")
        assert (unit in ("dollar", "cent")) == (number == 1), "singular exactly for one"
        cents += number * (100 if unit.startswith("dollar") else 1)
    return cents


@fast
@given(cents=st.integers(0, speech.MAX_NUMBER * 100 + 99), lang=st.sampled_from(LANGS))
def test_say_money_reads_back(cents, lang):
    ids = speech.say_money(cents, lang)
    assert_known(ids, lang)
    assert read_money(ids, lang) == cents
    if lang == "es":  # a number before a noun is apocopated: un dólar, veintiún centavos
        assert "n_1" not in ids and "n_21" not in ids


@pytest.mark.parametrize(("rate", "en", "cents"), [
    (Decimal("0.09"), "nine cents per minute.", 9),
    (Decimal("0.125"), "thirteen cents per minute.", 13),   # half up
    (Decimal("0.1249"), "twelve cents per minute.", 12),
    (Decimal("0.005"), "one cent per minute.", 1),
    (Decimal("0.0049"), "zero cents per minute.", 0),
    (Decimal("1.25"), "one dollar and twenty five cents per minute.", 125),
    (0, "zero cents per minute.", 0),
])
def test_say_rate_rounds_half_up(rate, en, cents):
    assert speech.rate_cents(rate) == cents
    assert text(speech.say_rate(rate, "en"), "en") == en


def test_say_rate_spanish_and_refuses_float():
    assert text(speech.say_rate(Decimal("0.21"), "es"), "es") == "veintiún centavos por minuto."
    for bad in (0.09, Decimal("-0.01"), Decimal("NaN"), "0.09", True):
        with pytest.raises(speech.SpeechError):
            speech.say_rate(bad, "en")


@fast
@given(tenthousandths=st.integers(0, 10_000_000), lang=st.sampled_from(LANGS))
def test_say_rate_matches_integer_half_up(tenthousandths, lang):
    rate = Decimal(tenthousandths).scaleb(-4)
    expected = (tenthousandths + 50) // 100
    assert speech.rate_cents(rate) == expected
    ids = speech.say_rate(rate, lang)
    assert ids[-1] == "per_minute"
    assert_known(ids, lang)


@pytest.mark.parametrize(("seconds", "en", "es"), [
    (0, "zero seconds", "cero segundos"),
    (1, "one second", "un segundo"),
    (60, "one minute", "un minuto"),
    (90, "one minute and thirty seconds", "un minuto y treinta segundos"),
    (900, "fifteen minutes", "quince minutos"),
    (1261, "twenty one minutes and one second", "veintiún minutos y un segundo"),
])
def test_say_duration_examples(seconds, en, es):
    assert text(speech.say_duration(seconds, "en"), "en") == en
    assert text(speech.say_duration(seconds, "es"), "es") == es


@fast
@given(seconds=st.integers(0, 100_000), lang=st.sampled_from(LANGS))
def test_say_duration_reads_back(seconds, lang):
    ids = speech.say_duration(seconds, lang)
    assert_known(ids, lang)
    total = 0
    for part in " ".join(ids).split(" and "):
        words = part.split()
        factor = 60 if words[-1].startswith("minute") else 1
        total += read_number(words[:-1]) * factor
    assert total == seconds


# --- prompt names and catalog -----------------------------------------------------------------------------

def test_prompt_names_and_errors():
    assert speech.prompt("welcome", "en") == "advancepay/en/welcome"
    assert speech.prompt("welcome", "es", prefix="custom/dir/") == "custom/dir/es/welcome"
    assert speech.prompts(["n_1", "dollar"], "es") == ["advancepay/es/n_1", "advancepay/es/dollar"]
    with pytest.raises(speech.UnknownPrompt):
        speech.prompt("no_such_prompt", "en")
    with pytest.raises(speech.SpeechError):
        speech.prompt("welcome", "fr")


def test_languages_ids_and_facility_names():
    assert speech.available_languages() == ("en", "es")
    assert speech.catalog_ids("en") == speech.catalog_ids("es")
    assert {"welcome", "time_warning", "dollars", "n_90", "facility_FAC-07"} <= speech.catalog_ids()
    assert speech.facility_name("FAC-07", "es") == ["facility_FAC-07"]
    assert speech.facility_name("FAC-NOPE", "en") == ["a_correctional_facility"]


def test_reload_catalog_with_another_facility_dir(tmp_path):
    folder = tmp_path / "facilities"
    folder.mkdir()
    (folder / "x.toml").write_text('id = "FAC-99"\nname = "Test Jail"\n', encoding="utf-8")
    try:
        speech.reload_catalog(tmp_path)
        assert speech.facility_name("FAC-99", "en") == ["facility_FAC-99"]
        assert speech.facility_name("FAC-07", "en") == ["facility_FAC-07"]  # catalog.toml fallback
    finally:
        speech.reload_catalog()
    assert speech.facility_name("FAC-99", "en") == ["a_correctional_facility"]
