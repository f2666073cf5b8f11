"""The Lua scripts, each prefixed with the preludes it uses, with their SHA1 for EVALSHA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


NAMES = ("open", "deposit", "hold", "capture", "settle", "void", "expire", "refund", "adjust", "freeze",
         "unfreeze", "close", "call", "block")
# Every function a prelude defines is built again on each run, so a script gets only the preludes it needs.
PRELUDES = {"call": ("_prelude", "_record"), "block": ("_prelude", "_record")}
ACCOUNT_PRELUDES = ("_prelude", "_account")


def _text(name: str) -> str:
    return resources.files("ledger").joinpath("lua", f"{name}.lua").read_text()


def make(name: str, source: str) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def load_all() -> dict[str, Script]:
    out = {}
    for name in NAMES:
        source = "\n".join([*(_text(p) for p in PRELUDES.get(name, ACCOUNT_PRELUDES)), _text(name)])
        out[name] = make(name, source)
    return out


SCRIPTS = load_all()
