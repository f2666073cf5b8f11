"""Load the prompt catalog: catalog.toml plus one name prompt per facility file.

Pure data loading with no audio tools involved, so the speech helpers and the tests can use it on a
machine without espeak-ng or sox.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CATALOG_FILE = PACKAGE_DIR / "catalog.toml"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_LANG_RE = re.compile(r"^[a-z]{2}$")


class CatalogError(ValueError):
    """The catalog or a facility file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Segment:
    """A stretch of text spoken with one language's voice."""

    lang: str
    text: str


@dataclass(frozen=True)
class Prompt:
    """One audio file: prompt ``id`` in language ``lang``, made of one or more voiced segments."""

    id: str
    lang: str
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    @property
    def key(self) -> str:
        return f"{self.lang}/{self.id}"


@dataclass(frozen=True)
class Catalog:
    """Every prompt in every language, plus the synthesiser voice per language."""

    voices: Mapping[str, str]
    prompts: Mapping[str, Prompt]  # keyed by Prompt.key ("en/welcome")

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.voices))

    def ids(self, lang: str | None = None) -> frozenset[str]:
        return frozenset(p.id for p in self.prompts.values() if lang is None or p.lang == lang)

    def get(self, prompt_id: str, lang: str) -> Prompt | None:
        return self.prompts.get(f"{lang}/{prompt_id}")

    def source_hash(self, prompt: Prompt) -> str:
        """Hash of what the audio depends on besides tool versions: text and voice of every segment."""
        parts = [[self.voices[s.lang], s.text] for s in prompt.segments]
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def facility_prompt_id(facility_id: str) -> str:
    """Prompt id of a facility's spoken name, e.g. ``facility_FAC-07``."""
    return f"facility_{facility_id}"


def default_facility_dir() -> Path:
    """The default of Settings.facility_dir (platform.config); CALLCONTROL_FACILITY_DIR wins."""
    env = os.environ.get("CALLCONTROL_FACILITY_DIR")
    return Path(env).expanduser() if env else PACKAGE_DIR.parent / "facility_data"


def _segments(prompt_id: str, lang: str, value: object, languages: Iterable[str]) -> tuple[Segment, ...]:
    if isinstance(value, str):
        raw: list[tuple[str, str]] = [(lang, value)]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        raw = []
        for item in value:
            seg_lang, sep, text = item.partition(":")
            if not sep or seg_lang not in languages:
                raise CatalogError(f"{prompt_id}.{lang}: segment {item!r} must start with e.g. 'en:'")
            raw.append((seg_lang, text))
    else:
        raise CatalogError(f"{prompt_id}.{lang}: text must be a string or a list of 'lang:text' strings")
    segments = tuple(Segment(seg_lang, " ".join(text.split())) for seg_lang, text in raw)
    if any(not s.text for s in segments):
        raise CatalogError(f"{prompt_id}.{lang}: empty text")
    return segments


def _add(prompts: dict[str, Prompt], prompt_id: str, entry: object, languages: tuple[str, ...]) -> None:
    if not _ID_RE.match(prompt_id):
        raise CatalogError(f"prompt id {prompt_id!r}: use letters, digits, '_' and '-' only")
    if not isinstance(entry, dict):
        raise CatalogError(f"{prompt_id}: expected a table of language -> text")
    missing = set(languages) - set(entry)
    extra = set(entry) - set(languages)
    if missing or extra:
        raise CatalogError(f"{prompt_id}: languages must be exactly {list(languages)}, "
                           f"missing {sorted(missing)}, unknown {sorted(extra)}")
    for lang in languages:
        prompt = Prompt(prompt_id, lang, _segments(prompt_id, lang, entry[lang], languages))
        prompts[prompt.key] = prompt


def _facility_entries(facility_dir: Path, languages: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """facility_<id> entries from facility files. Fields: id, name; optional name_<lang> per language;
    files with a ``kind`` other than "facility" (facility groups) are skipped.

    A language without its own name says the English name with the English voice: it is a proper name.
    """
    entries: dict[str, dict[str, object]] = {}
    folder = facility_dir / "facilities"
    if not folder.is_dir():
        return entries
    for path in sorted(folder.glob("*.toml")):
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{path}: {exc}") from exc
        table = data.get("facility", data) if isinstance(data.get("facility"), dict) else data
        if table.get("kind", "facility") != "facility":
            continue  # e.g. kind = "group": shared defaults, nobody calls from a group
        fac_id, name = table.get("id"), table.get("name")
        if not isinstance(fac_id, str) or not isinstance(name, str) or not name.strip():
            raise CatalogError(f"{path}: a facility file needs string fields 'id' and 'name'")
        entry: dict[str, object] = {}
        for lang in languages:
            own = table.get(f"name_{lang}")
            if lang == "en":
                entry[lang] = name
            elif isinstance(own, str) and own.strip():
                entry[lang] = own
            else:
                entry[lang] = [f"en:{name}"]
        entries[facility_prompt_id(fac_id)] = entry
    return entries


def load_catalog(catalog_file: Path = CATALOG_FILE, facility_dir: Path | None = None) -> Catalog:
    """Read catalog.toml, then add (or override) facility name prompts from the facility files."""
    with catalog_file.open("rb") as fh:
        data = tomllib.load(fh)
    voices = data.get("voices")
    if not isinstance(voices, dict) or not voices or not all(
        isinstance(k, str) and _LANG_RE.match(k) and isinstance(v, str) for k, v in voices.items()
    ):
        raise CatalogError(f"{catalog_file}: [voices] must map two-letter languages to espeak-ng voices")
    languages = tuple(sorted(voices))
    if "en" not in languages:
        raise CatalogError(f"{catalog_file}: English ('en') is required")
    entries = dict(data.get("prompts", {}))
    entries.update(_facility_entries(facility_dir or default_facility_dir(), languages))
    prompts: dict[str, Prompt] = {}
    for prompt_id, entry in entries.items():
        _add(prompts, prompt_id, entry, languages)
    return Catalog(voices=dict(voices), prompts=prompts)
