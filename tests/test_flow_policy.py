"""Inmate policy: hashed PINs, allowed lists, privileged and facility-blocked numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.policy import Policy, PolicyError, check_pin_hash, hash_pin

FAST = {"n": 2 ** 10}


def write_policy(tmp_path: Path) -> Path:
    d = tmp_path / "policy"
    d.mkdir()
    (d / "FAC-T.toml").write_text(f"""
facility = "FAC-T"
inmate_number_digits = 4
require_allowed_list = true
pin_max_failures = 3
blocked_numbers = ["+15550009999"]
privileged_numbers = [{{ number = "+15550001111", label = "Public defender" }}]

[inmates.1042]
name = "A. Inmate"
pin_hash = "{hash_pin('2468', **FAST)}"
allowed = ["+15551234567"]

[inmates.2001]
name = "Released"
pin_hash = "{hash_pin('1357', **FAST)}"
active = false
""")
    (d / "attorneys.toml").write_text('privileged_numbers = ["+15550002222"]\n')
    return d


def test_pin_hash_roundtrip_and_salt() -> None:
    a, b = hash_pin("1234", **FAST), hash_pin("1234", **FAST)
    assert a != b                      # per-hash salt
    assert "1234" not in a
    assert check_pin_hash("1234", a) and check_pin_hash("1234", b)
    assert not check_pin_hash("1235", a)
    assert not check_pin_hash("1234", "scrypt$garbage")
    assert not check_pin_hash("1234", "md5$00$00")


def test_verify_and_cache(tmp_path: Path) -> None:
    policy = Policy.load(write_policy(tmp_path))
    assert policy.split_entry("FAC-T", "10422468") == ("1042", "2468")
    assert policy.split_entry("FAC-T", "1042") is None
    assert policy.split_entry("FAC-X", "10422468") is None
    assert not policy.cached_pin_ok("FAC-T", "1042", "2468")
    inmate = policy.verify_pin("FAC-T", "1042", "2468")
    assert inmate is not None and inmate.name == "A. Inmate"
    assert policy.cached_pin_ok("FAC-T", "1042", "2468")
    assert not policy.cached_pin_ok("FAC-T", "1042", "2469")
    assert policy.verify_pin("FAC-T", "1042", "2469") is None
    assert policy.verify_pin("FAC-T", "2001", "1357") is None      # inactive
    assert policy.verify_pin("FAC-T", "9999", "1357") is None      # unknown


def test_numbers(tmp_path: Path) -> None:
    policy = Policy.load(write_policy(tmp_path))
    inmate = policy.verify_pin("FAC-T", "1042", "2468")
    assert inmate is not None
    assert policy.allowed(inmate, "+15551234567")
    assert not policy.allowed(inmate, "+15557654321")
    assert policy.allowed(inmate, "+15550001111")                  # privileged is always callable
    assert policy.is_privileged("FAC-T", "+15550002222")           # global list
    assert policy.is_privileged("FAC-T", "+15550001111")
    assert not policy.is_privileged("FAC-T", "+15551234567")
    assert policy.facility_blocks("FAC-T", "+15550009999")
    assert not policy.facility_blocks("FAC-T", "+15551234567")


def test_allowed_only_inmate(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "f.toml").write_text(f"""
facility = "F"
[inmates.1001]
pin_hash = "{hash_pin('1111', **FAST)}"
[inmates.1002]
pin_hash = "{hash_pin('2222', **FAST)}"
allowed_only = true
allowed = ["+15551234567"]
""")
    policy = Policy.load(d)
    free, restricted = policy.verify_pin("F", "1001", "1111"), policy.verify_pin("F", "1002", "2222")
    assert free is not None and restricted is not None
    assert policy.allowed(free, "+15557654321")
    assert not policy.allowed(restricted, "+15557654321")
    assert policy.allowed(restricted, "+15551234567")


def test_malformed_files_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.toml").write_text('facility = "F"\nblocked_numbers = ["5551234"]\n')
    with pytest.raises(PolicyError):
        Policy.load(d)
    (d / "x.toml").write_text('facility = "F"\n[inmates.12]\npin_hash = "plain"\n')
    with pytest.raises(PolicyError):
        Policy.load(d)


def test_shipped_policy_loads() -> None:
    root = Path(__file__).resolve().parent.parent / "facility_data" / "policy"
    policy = Policy.load(root)
    for fac in policy.facilities.values():
        assert fac.inmates, fac.facility_id
        for inmate in fac.inmates.values():
            assert inmate.pin_hash.startswith(("scrypt$", "pbkdf2_sha256$"))
