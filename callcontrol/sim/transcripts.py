"""Read the captured transcripts and replay their controller side against the simulator.

`parse()` turns a `.txt` capture into timed lines (`>>` Asterisk->controller bytes, `<<` controller->
Asterisk bytes, `##` harness notes). `Conductor` merges several captures into one timeline on a
`ManualClock`: at each line's capture time it advances simulated time, then sends the `<<` bytes (as a
controller stand-in over real TCP) or reads the next `>>` line from the simulator and records whether it
matches. AGI captures are served (the simulator connects to us); AMI captures are dialled.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from callcontrol.platform.clock import ManualClock

# The captures are test data kept in the repository; CALLCONTROL_TRANSCRIPTS points elsewhere.
TRANSCRIPT_DIR = Path(
    os.environ.get("CALLCONTROL_TRANSCRIPTS")
    or Path(__file__).resolve().parents[2] / "tests" / "data" / "asterisk-transcripts"
)

_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \(\+\s*([\d.]+)\) (>>|<<|##) ?(.*)$")
_START = re.compile(r"^# started (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", "0": b"\x00", '"': b'"', "'": b"'",
            "a": b"\x07", "b": b"\x08", "f": b"\x0c", "v": b"\x0b", "e": b"\x1b"}


def unescape(text: str) -> bytes:
    """Undo the captures' C escapes (\\r \\n \\\\ \\xNN ...); other characters are UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError(f"dangling backslash in {text!r}")
        nxt = text[i + 1]
        if nxt == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif nxt in _ESCAPES:
            out += _ESCAPES[nxt]
            i += 2
        else:
            raise ValueError(f"unknown escape \\{nxt} in {text!r}")
    return bytes(out)


@dataclass
class Line:
    at: float  # epoch seconds (capture start + relative offset)
    direction: str  # '>>', '<<', '##'
    data: bytes  # wire bytes ('##': the note text)


@dataclass
class Capture:
    name: str
    start: float
    lines: list[Line]

    def sent_by_asterisk(self) -> list[bytes]:
        return [ln.data for ln in self.lines if ln.direction == ">>"]


def parse(path: str | Path) -> Capture:
    p = Path(path)
    start = 0.0
    lines: list[Line] = []
    for raw in p.read_text().splitlines():
        m = _START.match(raw)
        if m:
            start = (
                calendar.timegm(time.strptime(m.group(1)[:-4], "%Y-%m-%d %H:%M:%S"))
                + int(m.group(1)[-3:]) / 1000
            )
            continue
        m = _LINE.match(raw)
        if not m:
            continue
        _, rel, direction, payload = m.groups()
        data = payload.encode() if direction == "##" else unescape(payload)
        lines.append(Line(start + float(rel), direction, data))
    return Capture(p.stem, start, lines)


def load(name: str) -> Capture:
    return parse(TRANSCRIPT_DIR / (name if name.endswith(".txt") else name + ".txt"))


# A `>>` line may differ from the capture in value only where Asterisk prints time-, address- or
# randomness-derived data; the check then applies to the form of the line.
Comparator = Callable[[bytes, bytes], bool]


@dataclass
class Mismatch:
    capture: str
    index: int
    expected: bytes
    got: bytes


@dataclass
class _Session:
    capture: Capture
    kind: str  # 'agi' (we serve) or 'ami' (we dial)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    last_command: bytes = b""


@dataclass
class Conductor:
    """Replays captures' controller side on one ManualClock timeline; collects mismatches."""

    clock: ManualClock
    agi_captures: list[Capture] = field(default_factory=list)
    ami_captures: list[Capture] = field(default_factory=list)
    ami_port: int = 0
    comparators: list[tuple[Callable[[_Session, bytes], bool], Comparator]] = field(default_factory=list)
    read_timeout: float = 3.0
    settle: float = 0.002
    mismatches: list[Mismatch] = field(default_factory=list)
    compared: int = 0
    _pending: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
    _server: asyncio.base_events.Server | None = None
    port: int = 0

    async def listen(self) -> int:
        self._pending = asyncio.Queue()

        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            assert self._pending is not None
            await self._pending.put((r, w))

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def run(self) -> None:
        assert self._pending is not None or not self.agi_captures
        timeline: list[tuple[float, int, _Session, int, Line]] = []
        seq = 0
        sessions = [_Session(c, "agi") for c in self.agi_captures] + [
            _Session(c, "ami") for c in self.ami_captures
        ]
        for s in sessions:
            for i, ln in enumerate(s.capture.lines):
                timeline.append((ln.at, seq, s, i, ln))
                seq += 1
        timeline.sort(key=lambda t: (t[0], t[1]))
        base_epoch = self.clock.now() - self.clock.monotonic()
        for at, _, s, i, ln in timeline:
            await self.clock.advance_to(max(self.clock.monotonic(), at - base_epoch))
            await self._step(s, i, ln)

    async def _open(self, s: _Session) -> None:
        if s.reader is not None:
            return
        if s.kind == "agi":
            assert self._pending is not None
            s.reader, s.writer = await asyncio.wait_for(self._pending.get(), self.read_timeout)
        else:
            s.reader, s.writer = await asyncio.open_connection("127.0.0.1", self.ami_port)

    async def _step(self, s: _Session, index: int, ln: Line) -> None:
        note = ln.data.decode() if ln.direction == "##" else ""
        if ln.direction == "##" and note.startswith("TCP connected"):
            await self._open(s)
            return
        if ln.direction == ">>":
            await self._open(s)
            assert s.reader is not None
            try:
                got = await asyncio.wait_for(s.reader.readline(), self.read_timeout)
            except TimeoutError:
                got = b"<timeout>"
            self.compared += 1
            if got != ln.data and not self._tolerated(s, ln.data, got):
                self.mismatches.append(Mismatch(s.capture.name, index, ln.data, got))
            return
        if ln.direction == "<<":
            await self._open(s)
            assert s.writer is not None
            s.writer.write(ln.data)
            if ln.data.endswith(b"\n"):
                s.last_command = ln.data
            await s.writer.drain()
            await asyncio.sleep(self.settle)  # let the simulator read it before time moves on
            return
        if s.writer is None:
            return
        if "half-closes" in note:
            s.writer.write_eof()
        elif "controller closes the socket" in note:
            s.writer.close()
        elif note.startswith("EOF from Asterisk"):
            assert s.reader is not None
            try:
                rest = await asyncio.wait_for(s.reader.read(), self.read_timeout)
            except TimeoutError:
                rest = b"<no EOF>"
            except (ConnectionError, OSError):
                rest = b""
            self.compared += 1
            if rest:
                self.mismatches.append(Mismatch(s.capture.name, index, b"<EOF>", rest))

    def _tolerated(self, s: _Session, expected: bytes, got: bytes) -> bool:
        return any(applies(s, expected) and ok(expected, got) for applies, ok in self.comparators)


def numeric_reply_within(tolerance: int) -> Comparator:
    """`200 result=1 (N)` replies equal up to +-tolerance (values Asterisk derives from elapsed time)."""

    def ok(expected: bytes, got: bytes) -> bool:
        a = re.fullmatch(rb"200 result=1 \((\d+)\)\n", expected)
        b = re.fullmatch(rb"200 result=1 \((\d+)\)\n", got)
        if a is None or b is None:
            return False
        return abs(int(a.group(1)) - int(b.group(1))) <= tolerance

    return ok


def after_command(*commands: str) -> Callable[[_Session, bytes], bool]:
    wanted = {c.encode() + b"\n" for c in commands}
    return lambda s, expected: s.last_command in wanted


VOLATILE_AMI = {
    b"Timestamp": rb"\d+\.\d{6}",  # Ping: microsecond wall clock
    b"EventTV": rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000",
    b"SessionTV": rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000",
    b"SessionID": rb"0x[0-9a-f]+",  # a pointer in Asterisk
    b"CommandId": rb"\d+",  # random in Asterisk
    b"LocalAddress": rb"IPV4/TCP/127\.0\.0\.1/\d+",  # our listening port differs from 5038
    b"RemoteAddress": rb"IPV4/TCP/127\.0\.0\.1/\d+",  # the client's ephemeral port
}


def volatile_ami_header(expected: bytes, got: bytes) -> bool:
    key, sep, _ = expected.partition(b": ")
    if not sep or key not in VOLATILE_AMI:
        return False
    m = re.fullmatch(re.escape(key) + rb": (.*)\r\n", got)
    return m is not None and re.fullmatch(VOLATILE_AMI[key], m.group(1)) is not None


def is_ami(s: _Session, expected: bytes) -> bool:
    return s.kind == "ami"
