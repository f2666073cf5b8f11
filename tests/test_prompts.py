"""The committed prompt audio matches the catalog: every id in every language, valid 8 kHz mono 16-bit
PCM WAV that Asterisk's wav format reads, recorded in the manifest with the current text; no stale files.
The build itself is exercised on a small catalog when espeak-ng and sox are installed."""

from __future__ import annotations

import array
import json
import shutil
import struct
import wave
from pathlib import Path

import pytest

from ivr_prompts import PACKAGE_DIR, CatalogError, load_catalog
from ivr_prompts import build as prompt_build

REQUIRED = """\
welcome choose_language enter_pin pin_invalid pin_locked enter_number number_invalid number_premium
number_toll_free number_short_code number_blocked_facility number_blocked_recipient number_not_allowed
outside_hours no_account insufficient_funds service_unavailable record_name please_hold call_not_answered
line_busy call_refused call_blocked_by_recipient time_warning funds_low_warning call_ended_funds goodbye
privileged_call_notice prepaid_call_from an_inmate_at monitoring_notice privileged_notice_recipient rate_is
per_minute balance_is press_accept_refuse_block press_repeat call_accepted call_refused_recipient
facility_blocked_confirm no_input_refused deposit_welcome deposit_enter_number deposit_enter_amount
deposit_enter_card deposit_enter_expiry deposit_enter_cvv deposit_confirm deposit_success deposit_declined
deposit_min_max hundred thousand dollar dollars cent cents and minute minutes second seconds star pound
cien ciento un una y facility_FAC-07
""".split()  # noqa: SIM905
REQUIRED += [f"digit_{d}" for d in range(10)] + [f"n_{n}" for n in range(20)]
REQUIRED += [f"n_{n}" for n in range(20, 100, 10)] + [f"n_{n}" for n in range(200, 1000, 100)]

EXACT_EN = {
    "service_unavailable": "We cannot place calls right now. Please try again later. "
                           "You have not been charged.",
    "record_name": "After the tone, say your name, then press pound.",
    "time_warning": "You have one minute remaining.",
    "prepaid_call_from": "You have a prepaid call from",
    "an_inmate_at": "an inmate at",
    "monitoring_notice": "This call is from a correctional facility and is subject to monitoring "
                         "and recording.",
    "rate_is": "The rate for this call is",
    "per_minute": "per minute.",
    "balance_is": "Your available balance is",
    "press_accept_refuse_block": "To accept, press 1. To refuse, press 2. "
                                 "To block future calls from this facility, press 9.",
    "press_repeat": "To hear this message again, press star.",
    "facility_blocked_confirm": "Calls from this facility are now blocked.",
    "choose_language": "For English, press 1. Para español, oprima 2.",
}

CATALOG = load_catalog()
MANIFEST = json.loads((PACKAGE_DIR / "manifest.json").read_text(encoding="utf-8"))


def test_required_ids_have_english_and_spanish_text():
    assert CATALOG.languages == ("en", "es")
    for prompt_id in REQUIRED:
        for lang in CATALOG.languages:
            prompt = CATALOG.get(prompt_id, lang)
            assert prompt is not None and prompt.text.strip(), f"{lang}/{prompt_id} missing"
    for prompt_id, wording in EXACT_EN.items():
        assert CATALOG.get(prompt_id, "en").text == wording
    # the language menu speaks each half in its own voice, in both language folders
    for lang in CATALOG.languages:
        assert [s.lang for s in CATALOG.get("choose_language", lang).segments] == ["en", "es"]
    assert CATALOG.ids("en") == CATALOG.ids("es")


@pytest.mark.parametrize("key", sorted(CATALOG.prompts))
def test_wav_is_8khz_mono_16bit_pcm_with_speech(key):
    path = PACKAGE_DIR / f"{key}.wav"
    head = path.read_bytes()[:36]
    assert head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt "
    assert struct.unpack("<H", head[20:22])[0] == 1, "plain PCM (format tag 1)"
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        assert wav.getcomptype() == "NONE"
        frames = wav.getnframes()
        assert 0.3 * 8000 <= frames <= 20 * 8000, f"{key}: {frames / 8000:.2f} s"
        samples = array.array("h", wav.readframes(frames))
    assert max(abs(s) for s in samples) > 8000, f"{key} is (nearly) silent"
    assert samples[0] == 0 and samples[-1] == 0, "padded with silence at both ends"


def test_manifest_matches_catalog_and_files():
    entries = MANIFEST["prompts"]
    assert set(entries) == set(CATALOG.prompts), "run `make prompts`: manifest and catalog differ"
    for key, prompt in CATALOG.prompts.items():
        entry = entries[key]
        assert entry["text"] == prompt.text
        assert entry["source"] == CATALOG.source_hash(prompt), f"{key} changed since its WAV was built"
        wav = PACKAGE_DIR / f"{key}.wav"
        assert entry["sha256"] == prompt_build.file_sha256(wav), f"{key} edited by hand"
    on_disk = {f"{lang}/{p.stem}" for lang in CATALOG.languages for p in (PACKAGE_DIR / lang).iterdir()}
    assert on_disk == set(CATALOG.prompts), "stale or missing files under ivr_prompts/<lang>/"


# --- catalog loading --------------------------------------------------------------------------------------

def write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def test_facility_files_add_and_override_name_prompts(tmp_path):
    write(tmp_path / "facilities" / "fac-07.toml", 'id = "FAC-07"\nname = "Cook Valley Detention Center"\n')
    write(tmp_path / "facilities" / "grp.toml", 'kind = "group"\nid = "GRP-X"\nname = "Some group"\n')
    write(tmp_path / "facilities" / "fac-12.toml",
          '[facility]\nid = "FAC-12"\nname = "Lake Shore Jail"\nname_es = "Cárcel de Lake Shore"\n')
    catalog = load_catalog(facility_dir=tmp_path)
    assert catalog.get("facility_FAC-07", "en").text == "Cook Valley Detention Center"
    es07 = catalog.get("facility_FAC-07", "es")
    assert [(s.lang, s.text) for s in es07.segments] == [("en", "Cook Valley Detention Center")]
    assert catalog.get("facility_FAC-12", "es").text == "Cárcel de Lake Shore"
    assert catalog.get("facility_FAC-12", "es").segments[0].lang == "es"
    assert catalog.get("facility_GRP-X", "en") is None


@pytest.mark.parametrize(("catalog_body", "facility_body"), [
    ('[voices]\nen = "en-us"\n[prompts]\nbad = { en = "x", es = "y" }\n', None),       # unknown language
    ('[voices]\nen = "en-us"\nes = "es"\n[prompts]\nx = { en = "hi" }\n', None),        # missing es
    ('[voices]\nen = "en-us"\nes = "es"\n[prompts]\n"a b" = { en = "1", es = "1" }\n', None),
    ('[voices]\nen = "en-us"\nes = "es"\n[prompts]\nx = { en = "1", es = ["fr:1"] }\n', None),
    ('[voices]\nen = "en-us"\nes = "es"\n[prompts]\nx = { en = " ", es = "1" }\n', None),
    ('[voices]\nen = "en-us"\nes = "es"\n[prompts]\n', 'name = "No id"\n'),
])
def test_malformed_catalog_is_rejected(tmp_path, catalog_body, facility_body):
    cat = write(tmp_path / "catalog.toml", catalog_body)
    if facility_body:
        write(tmp_path / "fac" / "facilities" / "x.toml", facility_body)
    with pytest.raises(CatalogError):
        load_catalog(cat, facility_dir=tmp_path / "fac")


# --- the build (needs espeak-ng and sox) ------------------------------------------------------------------

needs_tools = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                 reason="espeak-ng/sox not installed (scripts/bootstrap.sh --prompt-tools)")


@needs_tools
def test_build_is_incremental_and_deletes_stale(tmp_path):
    body = '[voices]\nen = "en-us"\nes = "es-419"\n[prompts]\n{}'
    one = 'welcome = { en = "Welcome to AdvancePay.", es = "Bienvenido a AdvancePay." }\n'
    two = 'goodbye = { en = "Thank you. Goodbye.", es = "Gracias. Adiós." }\n'
    cat = write(tmp_path / "catalog.toml", body.format(one + two))
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "nofacilities"
    assert prompt_build.build(out, load_catalog(cat, empty)) == (4, 0)
    first = (out / "en" / "welcome.wav").read_bytes()
    assert prompt_build.build(out, load_catalog(cat, empty)) == (0, 0)
    # same text, voice and tools -> same bytes as the committed file (deterministic build)
    if prompt_build.tool_versions() == MANIFEST["tools"]:
        assert first == (PACKAGE_DIR / "en" / "welcome.wav").read_bytes()
    hello = one.replace("Welcome to", "Hello from")
    write(cat, body.format(hello + two))
    assert prompt_build.build(out, load_catalog(cat, empty)) == (1, 0)
    assert (out / "en" / "welcome.wav").read_bytes() != first
    write(cat, body.format(hello))
    assert prompt_build.build(out, load_catalog(cat, empty)) == (0, 2)
    assert sorted(p.name for p in (out / "es").iterdir()) == ["welcome.wav"]
    assert set(json.loads((out / "manifest.json").read_text())["prompts"]) == {"en/welcome", "es/welcome"}


@needs_tools
def test_committed_prompts_are_up_to_date_with_these_tools():
    if prompt_build.tool_versions() != MANIFEST["tools"]:
        pytest.skip("different espeak-ng/sox versions: a rebuild would re-render every prompt")
    jobs, stale = prompt_build.plan(CATALOG, PACKAGE_DIR, MANIFEST["tools"], force=False)
    assert not jobs and not stale
