"""The Lua scripts, each prefixed with the shared prelude, with their SHA1 for EVALSHA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


def _load(name: str, prelude: str) -> Script:
    body = resources.files("ledger").joinpath("lua", f"{name}.lua").read_text()
    source = body if name == "noop" else prelude + "\n" + body
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


NAMES = ("open", "deposit", "hold", "capture", "settle", "void", "expire", "refund", "adjust", "freeze",
         "unfreeze", "close", "call", "block", "noop")


def load_all() -> dict[str, Script]:
    prelude = resources.files("ledger").joinpath("lua", "_prelude.lua").read_text()
    return {name: _load(name, prelude) for name in NAMES}


SCRIPTS = load_all()
