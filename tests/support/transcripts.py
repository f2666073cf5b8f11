"""Session view of the byte-exact Asterisk transcripts in tests/data/asterisk-transcripts.

Line format: ``HH:MM:SS.mmm (+seconds) DIR bytes`` where DIR is ``>>`` (Asterisk -> controller), ``<<``
(controller -> Asterisk) or ``##`` (harness note, not on the wire); bytes use C escapes (``\\r``, ``\\n``,
``\\\\``, ``\\xNN``...). ``#`` lines are file headers; a header after events starts a new session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from callcontrol.sim.transcripts import TRANSCRIPT_DIR, unescape

FROM_ASTERISK = ">>"
TO_ASTERISK = "<<"
NOTE = "##"
_NO_TERMINATOR = "[no line terminator in this chunk]"
_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) \(\+\s*(\d+\.\d+)\) (>>|<<|##)(?: (.*))?")


@dataclass(frozen=True)
class Event:
    clock: str
    offset: float
    direction: str  # ">>", "<<" or "##"
    data: bytes  # wire bytes (empty for notes)
    note: str = ""  # text of a ## note
    lineno: int = 0
    terminated: bool = True


@dataclass
class Session:
    header: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.header[0].lstrip("# ").strip() if self.header else ""

    def wire(self, direction: str) -> list[bytes]:
        return [e.data for e in self.events if e.direction == direction]

    def notes(self) -> list[str]:
        return [e.note for e in self.events if e.direction == NOTE]


@dataclass
class Transcript:
    path: Path
    sessions: list[Session]

    @property
    def session(self) -> Session:
        if len(self.sessions) != 1:
            raise ValueError(f"{self.path.name} has {len(self.sessions)} sessions")
        return self.sessions[0]


def parse_text(text: str, path: Path | str = "<text>") -> Transcript:
    sessions: list[Session] = []
    current: Session | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if raw.startswith("#"):
            if current is None or current.events:
                current = Session()
                sessions.append(current)
            current.header.append(raw)
            continue
        m = _LINE.fullmatch(raw)
        if not m:
            raise ValueError(f"{path}:{lineno}: not a transcript line: {raw!r}")
        if current is None:
            current = Session()
            sessions.append(current)
        clock, offset, direction, body = m.group(1), float(m.group(2)), m.group(3), m.group(4) or ""
        if direction == NOTE:
            current.events.append(Event(clock, offset, direction, b"", body, lineno))
            continue
        terminated = True
        if body.endswith(_NO_TERMINATOR):
            body = body[: -len(_NO_TERMINATOR)].rstrip(" ")
            terminated = False
        current.events.append(Event(clock, offset, direction, unescape(body), "", lineno, terminated))
    return Transcript(Path(path), sessions)


def load(name: str | Path) -> Transcript:
    path = Path(name)
    if not path.is_absolute():
        path = TRANSCRIPT_DIR / path
    return parse_text(path.read_text(encoding="utf-8"), path)


def _captures(pattern: str) -> list[Path]:
    """The captures matching `pattern`; none is an error, so a parametrised test cannot pass on zero cases."""
    found = sorted(TRANSCRIPT_DIR.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} in {TRANSCRIPT_DIR} (CALLCONTROL_TRANSCRIPTS overrides it)")
    return found


def fastagi_files() -> list[Path]:
    return _captures("fastagi-*.txt")


def ami_files() -> list[Path]:
    return _captures("ami-*.txt")


# ----------------------------------------------------------------------------- FastAGI view


@dataclass
class AGIExchange:
    """One controller command and everything Asterisk sent after it, until the next command."""

    command: bytes
    after: list[bytes]  # >> lines up to the next << line
    notes: list[str]


@dataclass
class AGISession:
    env: list[bytes]  # env block lines including the terminating b"\n"
    exchanges: list[AGIExchange]
    after_close: list[bytes]  # >> lines that followed a half-close note (sent once we shut down writing)
    notes_before: list[str]


def agi_view(session: Session) -> AGISession:
    """Split a FastAGI session into env block, command exchanges, and lines after our half-close."""
    events = iter(session.events)
    env: list[bytes] = []
    notes_before: list[str] = []
    pending: list[Event] = []
    for ev in events:
        if ev.direction == FROM_ASTERISK:
            env.append(ev.data)
            if ev.data == b"\n":
                break
        elif ev.direction == NOTE:
            notes_before.append(ev.note)
        else:
            raise ValueError("controller spoke before the env block ended")
    pending = list(events)
    exchanges: list[AGIExchange] = []
    after_close: list[bytes] = []
    closing = False
    for ev in pending:
        if ev.direction == TO_ASTERISK:
            exchanges.append(AGIExchange(ev.data, [], []))
        elif ev.direction == NOTE:
            if "half-close" in ev.note:
                closing = True
            if exchanges:
                exchanges[-1].notes.append(ev.note)
            else:
                notes_before.append(ev.note)
        elif closing:
            after_close.append(ev.data)
        elif exchanges:
            exchanges[-1].after.append(ev.data)
        else:
            raise ValueError("Asterisk line between env block and first command")
    return AGISession(env, exchanges, after_close, notes_before)


# ----------------------------------------------------------------------------- AMI view


def ami_messages(lines: list[bytes]) -> Iterator[bytes]:
    """Group AMI wire lines into messages (each ending with the empty line); the banner stands alone."""
    buf = b""
    for line in lines:
        if not buf and line.startswith(b"Asterisk Call Manager/"):
            yield line
            continue
        buf += line
        if line == b"\r\n":
            yield buf
            buf = b""
    if buf:
        yield buf


@dataclass
class AMIStep:
    """One controller message and the Asterisk messages that followed it, until the next one.

    ``notes`` are the harness notes written just before the message was sent (they describe it).
    """

    sent: bytes
    replies: list[bytes]
    notes: list[str]


@dataclass
class AMISession:
    banner: bytes
    before: list[bytes]  # Asterisk messages before our first message (after the banner)
    steps: list[AMIStep]


def ami_view(session: Session) -> AMISession:
    """Banner, then (our message, Asterisk's messages) steps; tolerant of Login sent before the banner."""
    banner = b""
    before: list[bytes] = []
    steps: list[AMIStep] = []
    out_buf = b""
    in_buf = b""
    notes: list[str] = []
    for ev in session.events:
        if ev.direction == NOTE:
            notes.append(ev.note)
            continue
        if ev.direction == FROM_ASTERISK:
            if not banner and not in_buf and ev.data.startswith(b"Asterisk Call Manager/"):
                banner = ev.data
                continue
            in_buf += ev.data
            if ev.data == b"\r\n":
                (steps[-1].replies if steps else before).append(in_buf)
                in_buf = b""
        else:
            out_buf += ev.data
            if ev.data == b"\r\n":
                steps.append(AMIStep(out_buf, [], notes))
                out_buf, notes = b"", []
    return AMISession(banner, before, steps)
