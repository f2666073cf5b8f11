"""`callcontrol tariff check` and `callcontrol rate quote`: output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from callcontrol.cli import main
from tests.test_rating_catalog import FACILITY, TARIFF, write_catalog

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() points structlog at the (captured) stderr of the moment; put the old config back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def facility_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_catalog(tmp_path / "data")
    monkeypatch.setenv("CALLCONTROL_FACILITY_DIR", str(root))
    monkeypatch.delenv("CALLCONTROL_CONFIG", raising=False)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_tariff_check_passes_a_good_file(facility_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "tariff", "check", str(facility_dir / "tariffs" / "TAR-T.v1.toml"))
    assert code == 0, out
    assert "checked  for FAC-T1" in out and "within the caps in force" in out and out.rstrip().endswith(
        "OK: 1 tariff file(s) checked")
    assert "FCC-25-75" in out                     # the missing-numbers fallback is visible


def test_tariff_check_fails_above_caps(facility_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TARIFF.replace("version = 1", "version = 2").replace("2024-11-19", "2025-01-01")
                   .replace('local = "0.09"', 'local = "0.10"'))
    code, out = run(capsys, "tariff", "check", str(bad))
    assert code == 1
    assert "ERROR" in out and "rates.local $0.1/min exceeds FCC-24-75 tier jail_adp_100_349" in out
    assert "FAILED" in out


def test_tariff_check_reports_override(facility_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    text = TARIFF.replace('local = "0.09"', 'local = "0.10"') + (
        '\n[cap_override]\nreason = "court order 12"\napproved_by = "counsel"\n')
    path = tmp_path / "over.toml"
    path.write_text(text)
    code, out = run(capsys, "tariff", "check", str(path))
    assert code == 0, out
    assert "OVERRIDE" in out and "court order 12" in out


def test_tariff_check_invalid_file_names_field(facility_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(TARIFF.replace('local = "0.09"', 'local = "cheap"'))
    good = facility_dir / "tariffs" / "TAR-T.v1.toml"
    code, out = run(capsys, "tariff", "check", str(path), str(good))
    assert code == 1
    assert f"INVALID  {path}: rates.local:" in out


def test_tariff_check_unused_tariff_lists_tiers(facility_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.toml"
    path.write_text(TARIFF.replace('id = "TAR-T"', 'id = "TAR-OTHER"'))
    code, out = run(capsys, "tariff", "check", str(path))
    assert code == 0, out
    assert "no facility" in out
    fits = next(line for line in out.splitlines() if "fits tiers" in line)
    exceeds = next(line for line in out.splitlines() if "exceeds tiers" in line)
    assert "jail_adp_100_349" in fits and "jail_adp_under_100" in fits
    assert "FCC-24-75/prison" in exceeds and "jail_adp_350_999" in exceeds


def test_tariff_check_missing_file(facility_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "tariff", "check", str(facility_dir / "nope.toml"))
    assert code == 1 and "cannot read" in out


def test_rate_quote(facility_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "(312) 868-1234",
                    "--balance", "1.00", "--at", "2026-01-05T12:00:00")
    assert code == 0, out
    assert "+13128681234" in out and "local" in out
    assert "$0.09 ($0.0963 with taxes)" in out
    assert "Min. to connect  $0.10 (10 cents)" in out
    assert "600 s (10:00), capped by funds" in out      # 10 min = 96c; 11 min = 106c


def test_rate_quote_curfew_and_offset_time(facility_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "+44 20 7946 0958",
                    "--balance", "$50", "--at", "2026-01-06T04:55:00+00:00")     # 22:55 in Chicago
    assert code == 0, out
    assert "international" in out and "300 s (5:00), capped by curfew" in out


@pytest.mark.parametrize(("argv", "code", "text"), [
    (["--facility", "FAC-T1", "--number", "1-900-555-0100", "--balance", "5"], 1, "refused (premium)"),
    (["--facility", "FAC-T1", "--number", "911", "--balance", "5"], 1, "refused (short_code)"),
    (["--facility", "FAC-T1", "--number", "x" * 10_000, "--balance", "5"], 1, "refused (too_long)"),
    (["--facility", "FAC-99", "--number", "3128681234", "--balance", "5"], 1, "unknown facility"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "five"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "1.005"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "-1"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "1e30"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "9" * 27], 2, "is above $10,000,000"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "١٢٣"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "５"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "1_000"], 2, "--balance"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "5", "--at", "9999-12-31T12:00"], 2,
     "--at: 9999-12-31T12:00:00-06:00 is outside the years"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "5", "--at", "tomorrow"], 2, "--at"),
    (["--facility", "FAC-T1", "--number", "3128681234", "--balance", "5", "--at", "2020-01-01T12:00"], 1,
     "no version"),
])
def test_rate_quote_errors(facility_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                           code: int, text: str) -> None:
    got, out = run(capsys, "rate", "quote", *argv)
    assert got == code and text in out, out


def test_rate_quote_with_broken_catalog_fails(facility_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (facility_dir / "facilities" / "FAC-T1.toml").write_text(FACILITY.replace('state = "IL"', 'state = "ZZ"'))
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "3128681234",
                    "--balance", "5")
    assert code == 1 and "FAC-T1.toml: state" in out


def test_console_command_exit_code_on_shipped_data() -> None:
    env = {"PATH": "/usr/bin:/bin", "CALLCONTROL_FACILITY_DIR": str(REPO / "facility_data")}
    files = sorted(str(p) for p in (REPO / "facility_data" / "tariffs").glob("*.toml"))
    done = subprocess.run([sys.executable, "-m", "callcontrol.cli", "tariff", "check", *files],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"OK: {len(files)} tariff file(s) checked" in done.stdout
    done = subprocess.run([sys.executable, "-m", "callcontrol.cli", "rate", "quote", "--facility", "FAC-07",
                           "--number", "1-800-555-0100", "--balance", "5"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "refused (toll_free)" in done.stdout


def test_rate_quote_number_with_trailing_spaces(facility_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "3128681234" + " " * 40,
                    "--balance", "1.00", "--at", "2026-01-05T12:00:00")
    assert code == 0 and "+13128681234" in out, out


LATIN1 = TARIFF.replace('name = "state tax"', 'name = "taxe d\'\u00e9tat"').encode("latin-1")


def test_tariff_check_non_utf8_file_is_invalid(facility_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(LATIN1)
    code, out = run(capsys, "tariff", "check", str(path))
    assert code == 1 and f"INVALID  {path}: not UTF-8 text (byte 0xe9 at offset" in out, out


def test_rate_quote_non_utf8_tariff_names_the_file(facility_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = facility_dir / "tariffs" / "TAR-T.v1.toml"
    path.write_bytes(LATIN1)
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "3128681234",
                    "--balance", "5", "--at", "2026-01-05T12:00:00")
    assert code == 1 and f"error: {path}: not UTF-8" in out and "--at" not in out, out


def test_rate_quote_hours_to_midnight_at_the_end_of_the_calendar(
        facility_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (facility_dir / "facilities" / "FAC-T1.toml").write_text(
        FACILITY.replace('all = "07:00-23:00"', 'all = "07:00-24:00"'))
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "3128681234",
                    "--balance", "5", "--at", "9998-12-31T12:00")
    assert code == 0 and "900 s (15:00), capped by facility_max" in out and "43200 s until" in out, out
    code, out = run(capsys, "rate", "quote", "--facility", "FAC-T1", "--number", "3128681234",
                    "--balance", "5", "--at", "9999-12-31T12:00")
    assert code == 2 and "error: --at:" in out, out


def test_tariff_check_unused_tariff_above_every_tier_fails(facility_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dear.toml"
    path.write_text(TARIFF.replace('id = "TAR-T"', 'id = "TAR-DEAR"').replace('"0.09"', '"0.50"'))
    code, out = run(capsys, "tariff", "check", str(path))
    assert code == 1, out
    assert "no facility" in out and "fits tiers: none" in out
    assert "ERROR    TAR-DEAR v1 exceeds every caps tier" in out and "FAILED" in out


def test_tariff_check_by_facility_type(facility_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.toml"
    path.write_text(TARIFF.replace('id = "TAR-T"', 'id = "TAR-OTHER"'))   # fits small jails only
    code, out = run(capsys, "tariff", "check", "--type", "prison", str(path))
    assert code == 1 and "exceeds every caps prison tier: no prison may use it" in out, out
    assert "jail_adp" not in out
    code, out = run(capsys, "tariff", "check", "--type", "jail", str(path))
    assert code == 0 and "fits jail tiers: " in out and "jail_adp_100_349" in out, out
    used = str(facility_dir / "tariffs" / "TAR-T.v1.toml")        # used by FAC-T1 (jail, ADP 250)
    code, out = run(capsys, "tariff", "check", "--type", "prison", used)
    assert code == 1 and "checked  for FAC-T1" in out and "no prison may use it" in out, out


def test_tariff_check_for_a_facility_that_does_not_use_it(facility_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    big = FACILITY.replace('"FAC-T1"', '"FAC-T2"').replace("average_daily_population = 250",
                                                           "average_daily_population = 5000")
    (facility_dir / "facilities" / "FAC-T2.toml").write_text(big)
    path = tmp_path / "other.toml"
    path.write_text(TARIFF.replace('id = "TAR-T"', 'id = "TAR-OTHER"'))
    code, out = run(capsys, "tariff", "check", "--facility", "FAC-T2", str(path))
    assert code == 1 and "no facility" in out and "checked  for FAC-T2" in out, out
    assert "at FAC-T2: rates.local $0.09/min exceeds FCC-24-75 tier jail_adp_1000_plus" in out
    code, out = run(capsys, "tariff", "check", "--facility", "FAC-T1", str(path))
    assert code == 0 and "within the caps in force" in out, out
    code, out = run(capsys, "tariff", "check", "--facility", "FAC-NONE", str(path))
    assert code == 2 and "--facility" in out
