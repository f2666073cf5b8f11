"""Numbers are ASCII digits only: str.isdigit(), int() and Decimal() also read Arabic-Indic ("١٢٣") and
fullwidth ("１２３") digits, which no phone keys and no real number has."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.decisions import choose_language, clean_number
from callcontrol.policy import Policy, PolicyError, hash_pin

ARABIC = "٣١٢٨٦٨١٢٣٤"        # 3128681234 in Arabic-Indic digits
FULLWIDTH = "３１２８６８１２３４"


@pytest.mark.parametrize("keyed", [ARABIC, FULLWIDTH, "312868123٤"])
def test_keyed_number_in_other_digits_is_no_number(keyed: str) -> None:
    assert clean_number("3128681234") == "3128681234"
    assert clean_number(keyed) is None


def test_language_key_in_other_digits_keeps_the_first_language() -> None:
    assert choose_language(("en", "es"), "2") == "es"
    assert choose_language(("en", "es"), "٢") == "en"
    assert choose_language(("en", "es"), "２") == "en"


def _policy(tmp_path: Path, *, blocked: str = "+15550009999", inmate: str = "1042") -> Path:
    d = tmp_path / "policy"
    d.mkdir(exist_ok=True)
    (d / "FAC-T.toml").write_text(
        f'facility = "FAC-T"\ninmate_number_digits = 4\nblocked_numbers = ["{blocked}"]\n'
        f'[inmates."{inmate}"]\nname = "A"\npin_hash = "{hash_pin("2468", n=2 ** 10)}"\n')
    return d


@pytest.mark.parametrize("blocked", ["+١٥٥٥٠٠٠٩٩٩٩", "+１５５５０００９９９９"])
def test_policy_numbers_in_other_digits_are_refused(tmp_path: Path, blocked: str) -> None:
    """A block written in such digits would never match the E.164 the rating engine gives: refuse it."""
    with pytest.raises(PolicyError, match=r"not an E\.164 number"):
        Policy.load(_policy(tmp_path, blocked=blocked))


def test_policy_inmate_number_in_other_digits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="inmate number"):
        Policy.load(_policy(tmp_path, inmate="١٠٤٢"))


def test_entry_in_other_digits_is_not_split(tmp_path: Path) -> None:
    policy = Policy.load(_policy(tmp_path))
    assert policy.split_entry("FAC-T", "10422468") == ("1042", "2468")
    assert policy.split_entry("FAC-T", "١٠٤٢٢٤٦٨") is None
