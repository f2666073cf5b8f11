"""How long Asterisk may take to answer each AGI command, derived from the command itself.

A peer that sends an env block and then never replies would otherwise hold a session (a descriptor, a
task, a call's state) for ever. Every command gets a deadline that fits it: Asterisk answers most at
once; a prompt takes its length; digit entry takes its timeouts; EXEC Dial takes its ring timeout, its
L() limit and a grace for answer and screening. Expiry ends the session (see AGIChannel.send).
"""

from __future__ import annotations

import re
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: A file whose length is unknown (a recorded name, a system sound): a generous bound per file.
UNKNOWN_PROMPT_SECONDS = 30.0
#: Input time when a command gives none Asterisk would bound (0 or -1: its defaults, or for ever).
UNBOUNDED_INPUT_SECONDS = 60.0
#: Dial with no L() limit is never sent by the flows; should one be, allow this much talk time.
UNLIMITED_DIAL_SECONDS = 4 * 3600.0
#: Dial with no ring timeout rings until the callee answers or the caller gives up.
DEFAULT_RING_SECONDS = 60.0

_LIMIT = re.compile(r"L\((\d+)")


def prompt_lengths(directory: Path) -> dict[str, float]:
    """Seconds of every ``<lang>/<id>.wav`` under ``directory``, keyed ``"<lang>/<id>"``."""
    lengths: dict[str, float] = {}
    for path in directory.glob("*/*.wav"):
        try:
            with wave.open(str(path)) as w:
                lengths[f"{path.parent.name}/{path.stem}"] = w.getnframes() / w.getframerate()
        except (OSError, EOFError, wave.Error, ZeroDivisionError):
            continue
    return lengths


@dataclass(frozen=True)
class Deadlines:
    """Seconds allowed for one command's reply. ``lengths`` maps ``"<lang>/<id>"`` to prompt seconds
    (see :func:`prompt_lengths`); a file it does not know counts as UNKNOWN_PROMPT_SECONDS."""

    reply: float = 10.0                 # a command Asterisk answers at once (GET VARIABLE, ANSWER...)
    dial_grace: float = 150.0           # EXEC Dial beyond ring + L(): answer, screening, hang-up
    lengths: Mapping[str, float] = field(default_factory=dict)

    def prompt(self, name: str) -> float:
        """``advancepay/en/welcome`` -> the length of ``en/welcome``."""
        head, _, stem = name.rpartition("/")
        return self.lengths.get(f"{head.rpartition('/')[2]}/{stem}", UNKNOWN_PROMPT_SECONDS)

    def prompts(self, files: str) -> float:
        return sum(self.prompt(f) for f in files.split("&") if f)

    def for_command(self, command: str, args: Sequence[str | int]) -> float:
        rule = _RULES.get(command)
        return self.reply + (rule(self, [str(a) for a in args]) if rule is not None else 0.0)

    def exec_app(self, app: str, argument: str) -> float:
        parts = argument.split(",")
        if app == "Dial":
            ring = _number(parts, 1) or DEFAULT_RING_SECONDS
            options = ",".join(parts[2:])
            limit = _LIMIT.search(options)
            talk = int(limit.group(1)) / 1000 if limit else UNLIMITED_DIAL_SECONDS
            return ring + talk + self.dial_grace
        if app == "Playback":
            return self.prompts(parts[0])
        if app == "Read":        # Read(var,files,maxdigits,options,attempts,timeout-seconds)
            seconds = _number(parts, 5)
            return self.prompts(_at(parts, 1)) + _input(seconds * 1000, _number(parts, 2))
        return 0.0


def _at(parts: Sequence[str], i: int) -> str:
    return parts[i].strip() if i < len(parts) else ""


def _number(parts: Sequence[str], i: int) -> float:
    try:
        return max(0.0, float(_at(parts, i)))
    except ValueError:
        return 0.0


def _input(timeout_ms: float, max_digits: float) -> float:
    """Digit entry: the first digit and each next one may each take the whole timeout."""
    per_digit = timeout_ms / 1000 if timeout_ms > 0 else UNBOUNDED_INPUT_SECONDS
    return per_digit * max(1, min(int(max_digits), 64))


def _exec(d: Deadlines, a: list[str]) -> float:
    return d.exec_app(_at(a, 0), _at(a, 1)) if a else 0.0


_RULES: dict[str, Callable[[Deadlines, list[str]], float]] = {
    "STREAM FILE": lambda d, a: d.prompt(_at(a, 0)),
    "CONTROL STREAM FILE": lambda d, a: d.prompt(_at(a, 0)),
    "GET DATA": lambda d, a: d.prompt(_at(a, 0)) + _input(_number(a, 1), _number(a, 2)),
    "GET OPTION": lambda d, a: d.prompt(_at(a, 0)) + _input(_number(a, 2), 1),
    "WAIT FOR DIGIT": lambda d, a: _input(_number(a, 0), 1),
    "RECORD FILE": lambda d, a: 1.0 + _input(_number(a, 3), 1),      # the beep, then the recording
    "SAY DIGITS": lambda d, a: 1.0 * len(_at(a, 0)),
    "SAY NUMBER": lambda d, a: 2.0 * len(_at(a, 0)),
    "EXEC": _exec,
}
