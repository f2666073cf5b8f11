"""Generate the prompt WAVs: ``python -m ivr_prompts.build [--force] [--check] [--jobs N]``.

espeak-ng speaks each segment, sox joins the segments, trims leading/trailing silence, resamples to
8 kHz mono 16-bit signed PCM (what Asterisk's ``wav`` format reads), normalises and pads a little.
Only prompts whose text, voice, settings or tool versions changed are rebuilt (manifest.json keeps a hash
per prompt); WAVs no longer in the catalog are deleted. Output is deterministic: no dither, no random
seeds, so a rebuild with the same tools gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ivr_prompts.catalog import PACKAGE_DIR, Catalog, Prompt, load_catalog

MANIFEST_NAME = "manifest.json"
SAMPLE_RATE = 8000
SPEED_WPM = 150
# Trim silence below 0.2 % amplitude at both ends, resample, normalise to -3 dBFS, pad 50 ms / 150 ms.
SOX_EFFECTS = ("silence", "1", "0.02", "0.2%", "reverse", "silence", "1", "0.02", "0.2%", "reverse",
               "rate", "-v", str(SAMPLE_RATE), "norm", "-3", "pad", "0.05", "0.15")


class BuildError(RuntimeError):
    """A tool is missing or failed; nothing half-written is left behind."""


@dataclass(frozen=True)
class Job:
    prompt: Prompt
    voices: tuple[str, ...]  # per segment
    build_key: str


def tool_versions() -> str:
    """Versions of espeak-ng and sox; part of every prompt's build key."""
    versions = []
    for cmd in (["espeak-ng", "--version"], ["sox", "--version"]):
        if shutil.which(cmd[0]) is None:
            raise BuildError(f"{cmd[0]} is not installed (scripts/bootstrap.sh --prompt-tools)")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        versions.append(" ".join(out.split("Data at")[0].split()))  # espeak-ng also prints its data path
    return " | ".join(versions)


def settings_fingerprint() -> str:
    return json.dumps({"rate": SAMPLE_RATE, "wpm": SPEED_WPM, "sox": SOX_EFFECTS})


def build_key(source_hash: str, tools: str) -> str:
    return hashlib.sha256(f"{source_hash}\n{settings_fingerprint()}\n{tools}".encode()).hexdigest()


def wav_path(root: Path, prompt: Prompt) -> Path:
    return root / prompt.lang / f"{prompt.id}.wav"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(root: Path) -> dict[str, dict[str, str]]:
    path = root / MANIFEST_NAME
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("prompts", {}))


def write_manifest(root: Path, tools: str, entries: dict[str, dict[str, str]]) -> None:
    body = {
        "comment": "Written by python -m ivr_prompts.build; do not edit.",
        "format": {"rate": SAMPLE_RATE, "channels": 1, "sample_width": 2},
        "tools": tools,
        "prompts": dict(sorted(entries.items())),
    }
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(root / MANIFEST_NAME)


def synthesize(job: Job, target: Path) -> None:
    """Speak each segment with espeak-ng, then let sox join and condition them into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ivr-") as tmp:
        parts = []
        for i, (seg, voice) in enumerate(zip(job.prompt.segments, job.voices, strict=True)):
            part = Path(tmp) / f"{i}.wav"
            proc = subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(SPEED_WPM), "-b", "1", "--stdout"],
                input=seg.text.encode("utf-8"), capture_output=True, check=False,
            )
            if proc.returncode or not proc.stdout:
                err = proc.stderr.decode(errors="replace")
                raise BuildError(f"espeak-ng failed for {job.prompt.key}: {err}")
            part.write_bytes(proc.stdout)
            parts.append(str(part))
        out = Path(tmp) / "out.wav"
        cmd = ["sox", "-D", *parts, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
               "-t", "wav", str(out), *SOX_EFFECTS]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode:
            raise BuildError(f"sox failed for {job.prompt.key}: {proc.stderr.decode(errors='replace')}")
        staged = target.with_suffix(".wav.tmp")
        shutil.copyfile(out, staged)
        staged.replace(target)


def plan(catalog: Catalog, root: Path, tools: str, force: bool) -> tuple[list[Job], list[Path]]:
    """Prompts to (re)build and stale WAVs to delete."""
    manifest = load_manifest(root)
    jobs = []
    for key, prompt in sorted(catalog.prompts.items()):
        bkey = build_key(catalog.source_hash(prompt), tools)
        path = wav_path(root, prompt)
        entry = manifest.get(key, {})
        fresh = (not force and entry.get("build") == bkey and path.exists()
                 and entry.get("sha256") == file_sha256(path))
        if not fresh:
            voices = tuple(catalog.voices[s.lang] for s in prompt.segments)
            jobs.append(Job(prompt, voices, bkey))
    wanted = {wav_path(root, p) for p in catalog.prompts.values()}
    stale = sorted(p for lang in catalog.languages for p in (root / lang).glob("*.wav") if p not in wanted)
    return jobs, stale


def build(root: Path = PACKAGE_DIR, catalog: Catalog | None = None, force: bool = False,
          jobs_n: int | None = None) -> tuple[int, int]:
    """Bring ``root`` in line with the catalog; returns (built, deleted)."""
    catalog = catalog or load_catalog()
    tools = tool_versions()
    jobs, stale = plan(catalog, root, tools, force)
    workers = jobs_n or max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda j: synthesize(j, wav_path(root, j.prompt)), jobs))
    for path in stale:
        path.unlink()
    entries = {}
    for key, prompt in catalog.prompts.items():
        path = wav_path(root, prompt)
        entries[key] = {
            "text": prompt.text,
            "source": catalog.source_hash(prompt),
            "build": build_key(catalog.source_hash(prompt), tools),
            "sha256": file_sha256(path),
        }
    write_manifest(root, tools, entries)
    return len(jobs), len(stale)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivr_prompts.build", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild every prompt")
    parser.add_argument("--check", action="store_true",
                        help="only report what would change; exit 1 if anything is out of date")
    parser.add_argument("--jobs", type=int, default=None, help="parallel synthesis jobs (default: CPUs)")
    parser.add_argument("--facility-dir", type=Path, default=None,
                        help="folder holding facilities/*.toml "
                        "(default: CALLCONTROL_FACILITY_DIR or ./facility_data)")
    args = parser.parse_args(argv)
    try:
        catalog = load_catalog(facility_dir=args.facility_dir)
        if args.check:
            jobs, stale = plan(catalog, PACKAGE_DIR, tool_versions(), force=False)
            for job in jobs:
                print(f"out of date: {job.prompt.key}")
            for path in stale:
                print(f"stale: {path.relative_to(PACKAGE_DIR)}")
            return 1 if jobs or stale else 0
        built, deleted = build(PACKAGE_DIR, catalog, force=args.force, jobs_n=args.jobs)
    except (BuildError, ValueError, OSError) as exc:
        print(f"ivr_prompts.build: {exc}", file=sys.stderr)
        return 1
    print(f"ivr_prompts: {len(catalog.prompts)} prompts, {built} built, {deleted} stale deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
