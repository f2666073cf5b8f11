"""Catalog loading: facility/tariff/caps files, validation errors naming file + field, caps, overrides,
versions, groups, calling hours and the shipped sample data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rating import CallClass, RatingError, TariffError, UnknownFacility, load_catalog
from rating.caps import default_caps_path, load_caps

REPO = Path(__file__).resolve().parent.parent
CHICAGO = ZoneInfo("America/Chicago")

FACILITY = """\
schema = 1
id = "FAC-T1"
name = "Test County Jail"
type = "jail"
average_daily_population = 250
state = "IL"
timezone = "America/Chicago"
local_area_codes = ["312", "773", "872"]
languages = ["en", "es"]
tariff = "TAR-T"
max_call_seconds = 900
warning_seconds = 60

[calling_hours]
all = "07:00-23:00"
"""

TARIFF = """\
schema = 1
id = "TAR-T"
version = 1
effective_from = 2024-11-19
billing_increment_seconds = 60
connect_fee = "0"

[rates]
local = "0.09"
intrastate = "0.09"
interstate = "0.09"

[international]
rate = "0.25"
termination_cost = "0.16"

[international.overrides.MX]
rate = "0.20"
termination_cost = "0.11"

[international.overrides.44]
rate = "0.12"
termination_cost = "0.03"

[[taxes]]
name = "state tax"
percent = "7"
mandated = true
"""


def write_catalog(root: Path, facilities: dict[str, str] | None = None,
                  tariffs: dict[str, str] | None = None) -> Path:
    """A facility_dir with the given files (defaults: one jail FAC-T1 and its tariff TAR-T v1)."""
    (root / "facilities").mkdir(parents=True, exist_ok=True)
    (root / "tariffs").mkdir(parents=True, exist_ok=True)
    for name, text in (facilities if facilities is not None else {"FAC-T1.toml": FACILITY}).items():
        (root / "facilities" / name).write_text(text)
    for name, text in (tariffs if tariffs is not None else {"TAR-T.v1.toml": TARIFF}).items():
        (root / "tariffs" / name).write_text(text)
    return root


def load_error(tmp_path: Path, **files: dict[str, str]) -> TariffError:
    write_catalog(tmp_path, **files)
    with pytest.raises(TariffError) as info:
        load_catalog(tmp_path)
    return info.value


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=CHICAGO)


# -- the shipped data --------------------------------------------------------------------------
def test_shipped_sample_data_loads_and_fac07_matches_the_spec() -> None:
    catalog = load_catalog(REPO / "facility_data")
    fac = catalog.facility("FAC-07")
    assert fac.name == "Cook Valley County Jail"
    assert (fac.kind, fac.adp, fac.state, fac.tz.key) == ("jail", 250, "IL", "America/Chicago")
    assert fac.languages == ("en", "es")
    assert (fac.max_call_seconds, fac.warning_seconds) == (900, 60)
    assert set(fac.local_area_codes) == {"312", "773", "872"}
    assert fac.is_open(at("2026-11-23T07:00:00")) and not fac.is_open(at("2026-11-23T06:59:59"))
    assert fac.is_open(at("2026-11-23T22:59:59")) and not fac.is_open(at("2026-11-23T23:00:00"))
    prison = catalog.facility("FAC-21")
    assert prison.kind == "prison" and prison.languages == ("en",) and prison.state != "IL"
    assert prison.group == "GRP-IN-DOC" and prison.max_call_seconds == 1200
    assert catalog.facility("FAC-22").max_call_seconds == 900  # member overrides the group default
    # FAC-07 local calls stay within the $0.09 cap of a 100-349 ADP jail
    q = catalog.quote("FAC-07", "(312) 868-1234", at("2026-11-23T12:00:00"))
    assert q.destination.call_class is CallClass.LOCAL and q.rate_per_minute <= Decimal("0.09")


def test_shipped_caps_file_has_fcc_24_75_numbers_and_25_75_structure_only() -> None:
    regimes = {r.id: r for r in load_caps(default_caps_path())}
    r24 = regimes["FCC-24-75"]
    assert r24.effective == dt.date(2024, 11, 19) and r24.complete
    caps = {t.id: t.cap for t in r24.tiers}
    assert caps == {
        "prison": Decimal("0.06"), "jail_adp_1000_plus": Decimal("0.06"), "jail_adp_350_999": Decimal("0.07"),
        "jail_adp_100_349": Decimal("0.09"), "jail_adp_under_100": Decimal("0.12"),
    }
    assert not r24.per_call_fees_allowed and not r24.ancillary_fees_allowed
    r25 = regimes["FCC-25-75"]
    assert (r25.effective, r25.compliance) == (dt.date(2025, 12, 5), dt.date(2026, 4, 6))
    assert r25.facility_cost_additive and "jail_extremely_small" in {t.id for t in r25.tiers}
    assert all(t.cap is None and t.additive is None for t in r25.tiers), "numbers must not be invented"
    assert not r25.complete


def test_missing_regime_numbers_fall_back_to_last_complete_regime_with_a_warning(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path))
    assert any("FCC-25-75" in w and "checked against FCC-24-75" in w for w in catalog.warnings)
    # the fallback really checks: a rate fine under nothing but above the 24-75 cap is refused
    # for a version in force only after 25-75 binds
    late = TARIFF.replace('interstate = "0.09"', 'interstate = "0.10"').replace(
        "effective_from = 2024-11-19", "effective_from = 2026-05-01")
    err = load_error(tmp_path / "b", tariffs={"late.toml": late})
    assert err.field == "rates.interstate" and "FCC-24-75" in str(err)


TEST_CAPS = """\
# TEST VALUES ONLY - invented for this test, not regulatory figures.
schema = 1
[[regime]]
id = "OLD"
title = "old"
source = "test"
effective = 2024-01-01
per_call_fees_allowed = false
ancillary_fees_allowed = false
international_termination_additive = true
facility_cost_additive = false
  [[regime.tier]]
  id = "prison"
  facility_type = "prison"
  cap_per_minute = "0.05"
  [[regime.tier]]
  id = "jail"
  facility_type = "jail"
  adp_min = 0
  cap_per_minute = "0.05"
[[regime]]
id = "NEW"
title = "new"
source = "test"
effective = 2025-01-01
compliance = 2025-06-01
per_call_fees_allowed = false
ancillary_fees_allowed = false
international_termination_additive = true
facility_cost_additive = true
  [[regime.tier]]
  id = "prison"
  facility_type = "prison"
  cap_per_minute = "0.08"
  facility_cost_additive = "0.01"
  [[regime.tier]]
  id = "jail_small"
  facility_type = "jail"
  adp_min = 0
  adp_max = 299
  cap_per_minute = "0.08"
  facility_cost_additive = "0.01"
  [[regime.tier]]
  id = "jail_large"
  facility_type = "jail"
  adp_min = 300
  cap_per_minute = "0.07"
  facility_cost_additive = "0.00"
"""


def test_a_filled_in_regime_binds_from_its_compliance_date_with_its_additive(tmp_path: Path) -> None:
    caps = tmp_path / "caps.toml"
    caps.write_text(TEST_CAPS)
    # 0.09 <= NEW small-jail cap 0.08 + additive 0.01, but > OLD 0.05: fine only if in force after 2025-06-01
    write_catalog(tmp_path / "ok", tariffs={"t.toml": TARIFF.replace("2024-11-19", "2025-06-01")})
    load_catalog(tmp_path / "ok", caps_path=caps)
    write_catalog(tmp_path / "early", tariffs={"t.toml": TARIFF.replace("2024-11-19", "2025-05-31")})
    with pytest.raises(TariffError, match="OLD tier jail cap"):
        load_catalog(tmp_path / "early", caps_path=caps)
    large = FACILITY.replace("average_daily_population = 250", "average_daily_population = 300")
    write_catalog(tmp_path / "large", facilities={"f.toml": large},
                  tariffs={"t.toml": TARIFF.replace("2024-11-19", "2025-06-01")})
    with pytest.raises(TariffError, match="NEW tier jail_large"):
        load_catalog(tmp_path / "large", caps_path=caps)


def test_caps_file_with_gaps_in_jail_tiers_is_refused(tmp_path: Path) -> None:
    caps = tmp_path / "caps.toml"
    caps.write_text(TEST_CAPS.replace("adp_min = 300", "adp_min = 301"))
    with pytest.raises(TariffError, match="starts at ADP 301, expected 300") as info:
        load_caps(caps)
    assert info.value.file == str(caps)


# -- caps enforcement and override ----------------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    (('interstate = "0.09"', 'interstate = "0.0901"'), "rates.interstate"),
    (('local = "0.09"', 'local = "0.10"'), "rates.local"),
    (('rate = "0.20"', 'rate = "0.32"'), "international.overrides.MX"),          # > 0.09 + 0.11 termination
    (('termination_cost = "0.16"', 'termination_cost = "0.15"'), "international"),  # 0.25 > 0.09 + 0.15
    (('connect_fee = "0"', 'connect_fee = "0.25"'), "connect_fee"),
    # a provider's own percentage fee counts toward the cap: 0.09 * 1.07 > 0.09
    (("mandated = true", "mandated = false"), "rates.local"),
    # a provider's own per-call fee is prohibited outright
    (('percent = "7"\nmandated = true', 'percent = "0"\nper_call = "0.10"\nmandated = false'), "taxes[0]"),
])
def test_tariff_above_caps_or_with_prohibited_fees_is_refused(tmp_path: Path, change: tuple[str, str],
                                                             field: str) -> None:
    err = load_error(tmp_path, tariffs={"t.toml": TARIFF.replace(*change)})
    assert err.file.endswith("t.toml") and err.field == field
    assert "exceeds FCC-24-75 tier jail_adp_100_349" in str(err) or "prohibited under" in str(err)


def test_cap_override_accepts_and_reports(tmp_path: Path) -> None:
    text = TARIFF.replace('interstate = "0.09"', 'interstate = "0.11"') + (
        '\n[cap_override]\nreason = "state PUC waiver 2025-17"\napproved_by = "ops@example.org"\n')
    catalog = load_catalog(write_catalog(tmp_path, tariffs={"t.toml": text}))
    reported = [w for w in catalog.warnings if "ACCEPTED under cap_override" in w]
    assert reported and "state PUC waiver 2025-17" in reported[0] and "rates.interstate" in reported[0]
    q = catalog.quote("FAC-T1", "+1 212 555 0182", at("2026-01-05T12:00:00"))
    assert q.rate_per_minute == Decimal("0.11")


def test_prison_caps_use_the_prison_tier_regardless_of_population(tmp_path: Path) -> None:
    prison = FACILITY.replace('type = "jail"', 'type = "prison"').replace(
        "average_daily_population = 250", "average_daily_population = 40")
    err = load_error(tmp_path, facilities={"p.toml": prison})   # 0.09 > prison cap 0.06
    assert "tier prison cap $0.06" in str(err)


# -- malformed files: every error names the file and the field -----------------------------------
@pytest.mark.parametrize(("old", "new", "field", "problem"), [
    ('timezone = "America/Chicago"', 'timezone = "America/Chicagoo"', "timezone", "IANA"),
    ('state = "IL"', 'state = "XX"', "state", "not one of"),
    ("max_call_seconds = 900", 'max_call_seconds = "900"', "max_call_seconds", "integer"),
    ("max_call_seconds = 900", "max_call_seconds = 30", "max_call_seconds", "at least 60"),
    ("max_call_seconds = 900", "max_call_seconds = 60", "warning_seconds", "shorter than"),
    ('all = "07:00-23:00"', 'all = "23:00-07:00"', "calling_hours.all", "end must be after start"),
    ('all = "07:00-23:00"', 'all = "7am-11pm"', "calling_hours.all", "not a range"),
    ('all = "07:00-23:00"', 'all = ["07:00-12:00", "11:00-13:00"]', "calling_hours.all", "overlap"),
    ('all = "07:00-23:00"', 'mon = "07:00-23:00"', "calling_hours.tue", "no hours"),
    ('local_area_codes = ["312", "773", "872"]', 'local_area_codes = ["31"]', "local_area_codes", "312"[:0]),
    ('local_area_codes = ["312", "773", "872"]', 'local_area_codes = ["3١٢"]', "local_area_codes",
     "expected form"),                                              # Arabic-Indic digits
    ('all = "07:00-23:00"', 'all = "0٧:00-23:00"', "calling_hours.all", "not a range"),
    ('all = "07:00-23:00"', 'all = "07:00-２３:00"', "calling_hours.all", "not a range"),
    ('languages = ["en", "es"]', "languages = []", "languages", "at least one"),
    ('tariff = "TAR-T"', 'tariff = "TAR-NOPE"', "tariff", "no tariff file"),
    ('type = "jail"', 'type = "camp"', "type", "not one of"),
    ("average_daily_population = 250\n", "", "average_daily_population", "required for a jail"),
    ('name = "Test County Jail"', 'name = "x"\ncolour = "blue"', "colour", "unknown field"),
    ('id = "FAC-T1"', 'id = "fac t1"', "id", "expected form"),
    ('id = "FAC-T1"', 'id = "FAC-T1"\ngroup = "GRP-NONE"', "group", "unknown group"),
])
def test_malformed_facility_names_file_and_field(tmp_path: Path, old: str, new: str, field: str,
                                                 problem: str) -> None:
    assert old in FACILITY
    err = load_error(tmp_path, facilities={"bad.toml": FACILITY.replace(old, new)})
    assert err.file.endswith("bad.toml"), err
    assert err.field == field, err
    assert problem in err.problem, err


INC = "billing_increment_seconds"


@pytest.mark.parametrize(("old", "new", "field", "problem"), [
    ('local = "0.09"', 'local = "0.0900001"', "rates.local", "6 decimal places"),
    ('local = "0.09"', 'local = "-0.01"', "rates.local", "plain non-negative"),
    ('local = "0.09"', 'local = "abc"', "rates.local", "plain non-negative"),
    ('local = "0.09"', "local = 0.09", None, None),                     # TOML number: parsed as Decimal
    ('local = "0.09"', 'local = "1e-2"', "rates.local", "plain non-negative"),
    ('local = "0.09"', 'local = "0.０9"', "rates.local", "plain non-negative"),
    ("[international.overrides.44]", "[international.overrides.\"٤٤\"]", 'international.overrides.٤٤',
     "ISO region"),
    ('local = "0.09"\n', "", "rates.local", "required"),
    ("billing_increment_seconds = 60", "billing_increment_seconds = 45", INC, "divide 60"),
    ("billing_increment_seconds = 60", "billing_increment_seconds = 0", INC, "at least 1"),
    ("effective_from = 2024-11-19", 'effective_from = "2024-11-19"', "effective_from", "TOML date"),
    ("effective_from = 2024-11-19", "effective_from = 2024-11-19T00:00:00", "effective_from", "UTC offset"),
    ('percent = "7"', 'percent = "101"', "taxes[0].percent", "sanity limit"),
    ('percent = "7"', 'percent = "7.12345"', "taxes[0].percent", "4 decimal places"),
    ("mandated = true\n", "", "taxes[0].mandated", "required"),
    ("mandated = true", 'mandated = "yes"', "taxes[0].mandated", "true or false"),
    ("[international.overrides.MX]", "[international.overrides.Mexico]", "international.overrides.Mexico",
     "ISO region"),
    ('termination_cost = "0.16"', 'termination_cost = "0.16"\nsurcharge = "1"', "international.surcharge",
     "unknown field"),
    ("version = 1", "version = 0", "version", "at least 1"),
    ("schema = 1", "schema = 2", "schema", "at most 1"),
    ("[rates]", "rates = 5\n[other]", "rates", "must be a table"),
])
def test_malformed_tariff_names_file_and_field(tmp_path: Path, old: str, new: str, field: str | None,
                                               problem: str | None) -> None:
    assert old in TARIFF
    write_catalog(tmp_path, tariffs={"bad.toml": TARIFF.replace(old, new)})
    if field is None:
        load_catalog(tmp_path)
        return
    with pytest.raises(TariffError) as info:
        load_catalog(tmp_path)
    err = info.value
    assert err.file.endswith("bad.toml") and err.field == field and problem in err.problem, err


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    err = load_error(tmp_path, tariffs={"broken.toml": TARIFF + "\nthis is not toml = = \n"})
    assert err.file.endswith("broken.toml") and "not valid TOML" in str(err)


def test_duplicate_and_disordered_versions_are_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path / "dup", tariffs={"a.toml": TARIFF, "b.toml": TARIFF})
    assert err.field == "version" and "also defined" in err.problem
    v2 = TARIFF.replace("version = 1", "version = 2").replace("2024-11-19", "2024-11-01")
    err = load_error(tmp_path / "order", tariffs={"a.toml": TARIFF, "b.toml": v2})
    assert err.file.endswith("b.toml") and err.field == "effective_from"


def test_missing_directories_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TariffError, match="directory not found"):
        load_catalog(tmp_path / "nowhere")


# -- versions, facilities, hours ------------------------------------------------------------------
def test_call_is_rated_by_the_version_in_force_when_it_started(tmp_path: Path) -> None:
    v2 = TARIFF.replace("version = 1", "version = 2").replace(
        "effective_from = 2024-11-19", "effective_from = 2026-07-01T00:00:00-05:00").replace(
        'local = "0.09"', 'local = "0.08"')
    catalog = load_catalog(write_catalog(tmp_path, tariffs={"v1.toml": TARIFF, "v2.toml": v2}))
    before = catalog.quote("FAC-T1", "3128681234", at("2026-06-30T23:59:59"))
    after = catalog.quote("FAC-T1", "3128681234", at("2026-07-01T00:00:00"))
    assert (before.tariff_version, before.rate_per_minute) == (1, Decimal("0.09"))
    assert (after.tariff_version, after.rate_per_minute) == (2, Decimal("0.08"))
    # a date means midnight in the facility's zone: 2024-11-19 00:00 Chicago is 06:00 UTC
    with pytest.raises(RatingError, match="no version"):
        catalog.quote("FAC-T1", "3128681234", dt.datetime(2024, 11, 19, 5, 59, tzinfo=dt.UTC))
    assert catalog.quote("FAC-T1", "3128681234", dt.datetime(2024, 11, 19, 6, 0, tzinfo=dt.UTC))


def test_unknown_facility_and_naive_datetimes_are_refused(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path))
    with pytest.raises(UnknownFacility):
        catalog.facility("FAC-99")
    with pytest.raises(UnknownFacility):
        catalog.quote("FAC-99", "3128681234", at("2026-01-05T12:00:00"))
    with pytest.raises(UnknownFacility):
        catalog.classify("FAC-99", "3128681234")
    with pytest.raises(RatingError, match="time-zone-aware"):
        catalog.quote("FAC-T1", "3128681234", dt.datetime(2026, 1, 5, 12, 0))


def test_groups_give_defaults_and_group_errors_name_the_group_file(tmp_path: Path) -> None:
    group = ('schema = 1\nkind = "group"\nid = "GRP-A"\nstate = "IL"\ntimezone = "America/Chicago"\n'
             'languages = ["en"]\ntariff = "TAR-T"\nmax_call_seconds = 600\nwarning_seconds = 30\n'
             'local_area_codes = ["312"]\n[calling_hours]\nall = "08:00-20:00"\n')
    member = ('schema = 1\nid = "FAC-M"\nname = "Member"\ngroup = "GRP-A"\ntype = "jail"\n'
              "average_daily_population = 250\n")
    catalog = load_catalog(write_catalog(tmp_path, facilities={"g.toml": group, "m.toml": member}))
    fac = catalog.facility("FAC-M")
    assert (fac.max_call_seconds, fac.languages, fac.state) == (600, ("en",), "IL")
    assert fac.is_open(at("2026-01-05T08:00:00")) and not fac.is_open(at("2026-01-05T07:59:00"))
    bad = group.replace('timezone = "America/Chicago"', 'timezone = "Mars/Olympus"')
    err = load_error(tmp_path / "bad", facilities={"g.toml": bad, "m.toml": member})
    assert err.file.endswith("g.toml") and err.field == "timezone"


HOURS = FACILITY.replace('all = "07:00-23:00"', (
    'all = "07:00-23:00"\nmon = "20:00-24:00"\ntue = ["00:00-02:00", "09:00-17:00"]\nsun = "01:00-04:00"\n'
    'sat = "closed"'))


@pytest.mark.parametrize(("local", "expected"), [
    ("2026-01-05T20:00:00", 6 * 3600),        # Monday 20:00: open through midnight until Tue 02:00
    ("2026-01-05T23:00:00", 3 * 3600),
    ("2026-01-06T01:59:30", 30),
    ("2026-01-06T02:00:00", 0),               # closed between windows
    ("2026-01-06T16:00:00", 3600),
    ("2026-01-10T12:00:00", 0),               # Saturday closed
    ("2026-01-05T19:59:59", 0),
    # Sunday 2026-03-08, DST starts (02:00 -> 03:00): 01:30 CST to 04:00 CDT is 2.5 wall hours but
    # only 1.5 real hours (07:30Z -> 09:00Z)
    ("2026-03-08T01:30:00", 5400),
    # Sunday 2026-11-01, DST ends (02:00 CDT -> 01:00 CST): the first 01:30 (CDT, 06:30Z) to 04:00 CST
    # (10:00Z) is 3.5 real hours
    ("2026-11-01T01:30:00-05:00", 3 * 3600 + 1800),
])
def test_seconds_until_close(tmp_path: Path, local: str, expected: int) -> None:
    catalog = load_catalog(write_catalog(tmp_path, facilities={"h.toml": HOURS}))
    when = dt.datetime.fromisoformat(local)
    when = when if when.tzinfo else when.replace(tzinfo=CHICAGO)
    fac = catalog.facility("FAC-T1")
    assert fac.seconds_until_close(when) == expected
    assert fac.is_open(when) == (expected > 0)


def test_always_open_facility_has_no_closing_time(tmp_path: Path) -> None:
    open_all = FACILITY.replace('all = "07:00-23:00"', 'all = "00:00-24:00"')
    catalog = load_catalog(write_catalog(tmp_path, facilities={"f.toml": open_all}))
    q = catalog.quote("FAC-T1", "3128681234", at("2026-01-05T03:00:00"))
    assert q.seconds_until_close is None
    assert q.max_duration(10_000) == 900 and q.capped_by == "facility_max"
