"""Capture FastAGI/AMI transcripts between a real Asterisk and `callcontrol serve` (issue #9).

`CaptureProxy` is a TCP proxy on loopback that sits between the two and writes every session in the line
format of tests/data/asterisk-transcripts/README.md (``HH:MM:SS.mmm (+seconds) DIR bytes``, C escapes,
one protocol line per transcript line; ``>>`` Asterisk -> controller, ``<<`` controller -> Asterisk,
``##`` harness note). For FastAGI Asterisk dials the proxy (its CONTROLLER global points at it) and the
proxy dials the controller; for AMI the controller dials the proxy (CALLCONTROL_AMI_PORT) and the proxy
dials Asterisk's manager port.

`python -m tests.support.capture [out_dir] [scenario ...]` runs the scenarios below, each on its own
private site (RealWorld: redis-server, Asterisk, `callcontrol serve`), and writes
``fastagi-<scenario>-<script>[-n].txt`` for every AGI session of the call and ``ami-<scenario>.txt`` for
the controller's AMI session into tests/data/asterisk-transcripts/advancepay/ (the default). It needs an
Asterisk: ASTERISK_SRC / ASTERISK_BIN as for tests/test_real_asterisk.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from callcontrol.platform.config import REPO_ROOT
from tests.support.realworld import RealWorld, pin
from tests.support.switch import CALLER_HANGS_UP, HANG_UP, SILENCE, Call, Party, Switch

OUT_DIR = REPO_ROOT / "tests" / "data" / "asterisk-transcripts" / "advancepay"
FAC = "FAC-07"
RING = 8

_PRINTABLE = {i for i in range(0x20, 0x7F)} - {0x5C}
_NAMED = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x5C: "\\\\"}


def escape(data: bytes) -> str:
    """C escapes as the transcripts show them (the inverse of callcontrol.sim.transcripts.unescape)."""
    return "".join(chr(b) if b in _PRINTABLE else _NAMED.get(b, f"\\x{b:02x}") for b in data)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


@dataclass
class Transcript:
    """One TCP session as transcript lines, timed from its start."""

    kind: str                        # "agi" or "ami"
    title: str
    start: float = field(default_factory=time.time)
    lines: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    def add(self, direction: str, data: bytes, terminated: bool = True) -> None:
        now = time.time()
        body = escape(data) + ("" if terminated else " [no line terminator in this chunk]")
        self.lines.append(f"{_clock(now)} (+{now - self.start:7.3f}) {direction} {body}")
        if self.kind == "agi" and direction == ">>" and b": " in data and not self.env.get("done"):
            key, _, value = data.decode(errors="replace").rstrip("\n").partition(": ")
            self.env[key] = value
        elif self.kind == "agi" and data == b"\n" and direction == ">>":
            self.env["done"] = "1"

    def note(self, text: str) -> None:
        now = time.time()
        self.lines.append(f"{_clock(now)} (+{now - self.start:7.3f}) ## {text}")

    @property
    def script(self) -> str:
        return self.env.get("agi_network_script", "").partition("?")[0]

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    def text(self) -> str:
        started = f"{time.strftime('%Y-%m-%d', time.gmtime(self.start))} {_clock(self.start)}"
        head = [f"# {self.title}", f"# started {started} (UTC)",
                "# columns: wallclock  (+seconds since start)  direction  bytes",
                "# '>>' Asterisk -> controller, '<<' controller -> Asterisk, '##' harness note; "
                "\\r \\n shown escaped", ""]
        tail = [] if self.closed else [f"{_clock(time.time())} (+{time.time() - self.start:7.3f}) ## "
                                       "transcript closed (session still open)"]
        return "\n".join(head + self.lines + tail) + "\n"


class CaptureProxy:
    """Loopback TCP proxy that records each session. `kind="agi"`: Asterisk is the client (it dials us);
    `kind="ami"`: the controller is the client and Asterisk the upstream."""

    def __init__(self, kind: str, upstream_port: int, title: Callable[[int], str] | None = None) -> None:
        self.kind = kind
        self.upstream_port = upstream_port
        self.title = title or (lambda n: f"{'FastAGI' if kind == 'agi' else 'AMI'} session #{n}")
        self.sessions: list[Transcript] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CaptureProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tx = Transcript(self.kind, self.title(len(self.sessions) + 1))
        self.sessions.append(tx)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as exc:
            tx.note(f"upstream 127.0.0.1:{self.upstream_port} refused: {exc}")
            tx.closed = True
            writer.close()
            return
        if self.kind == "ami":
            tx.note(f"TCP connected to 127.0.0.1:{self.upstream_port}")
            ast_r, ctl_w, ctl_r, ast_w = up_r, writer, reader, up_w
        else:
            ast_r, ctl_w, ctl_r, ast_w = reader, up_w, up_r, writer
        from_ast = self._pump(ast_r, ctl_w, ">>", tx, "EOF from Asterisk (socket closed by Asterisk)")
        ctl_eof = ("controller half-closes its side (shutdown SHUT_WR)" if self.kind == "agi"
                   else "controller closes the socket")
        from_ctl = self._pump(ctl_r, ast_w, "<<", tx, ctl_eof)
        task = asyncio.ensure_future(asyncio.gather(from_ast, from_ctl))
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            for w in (writer, up_w):
                w.close()
            if self.kind == "agi":
                tx.note("controller closes the socket")
            tx.note("transcript closed")
            tx.closed = True

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str, tx: Transcript,
                    eof_note: str) -> None:
        buf = b""
        while True:
            try:
                data = await src.read(65536)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                tx.add(direction, line + b"\n")
            with contextlib.suppress(ConnectionError, OSError):
                dst.write(data)
                await dst.drain()
        if buf:
            tx.add(direction, buf, terminated=False)
        tx.note(eof_note)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()


class NotingSwitch(Switch):
    """The tests' Switch, writing what the harness makes each party do into that party's AGI transcript."""

    def __init__(self, agi: CaptureProxy, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.agi = agi

    def _note(self, channel: str, text: str) -> None:
        for tx in self.agi.sessions:
            if tx.channel == channel and not tx.closed:
                tx.note("harness: " + text)

    async def _play(self, call: Call, party: Party, steps: tuple[str | float, ...]) -> None:
        who = "handset" if party is call.handset else "recipient"
        for step in steps:
            if isinstance(step, float | int):
                await asyncio.sleep(step)
            elif step == HANG_UP:
                self._note(party.agi_channel, f"AMI Hangup {party.channel} ({who} hangs up)")
                await self.hang_up(party.channel)
            elif step == CALLER_HANGS_UP:
                for p in (call.handset, call.recipient):
                    self._note(p.agi_channel, f"AMI Hangup {call.handset.channel} (handset hangs up)")
                await self.hang_up(call.handset.channel)
            elif step != SILENCE:
                self._note(party.agi_channel, f"AMI Setvar SEND_DIGITS={step} on {party.channel} "
                                              f"({who} will SendDTMF)")
                await self.press(party.channel, step)


# ----------------------------------------------------------------------------- scenarios


def inmate(number: str, who: int) -> list[str | tuple[str | float, ...]]:
    """English, inmate number + passcode, the number, then `#` ends the name recording at once."""
    return ["1", pin(who), f"{number}#", "#"]


VISA, CVV = "4111111111111111", "739"


@dataclass
class Scenario:
    number: str
    handset: Callable[[], Party]
    recipient: Callable[[], Party] = lambda: Party([])
    funds: int | None = 500
    station: str = "0701"
    context: str = "facility-phones"
    about: str = ""


SCENARIOS: dict[str, Scenario] = {
    "accepted": Scenario("3125551201", lambda: Party(inmate("3125551201", 1050)),
                         lambda: Party(["1"], talk=5),
                         about="a full accepted call: the recipient presses 1, hangs up after 5 s of talk"),
    "refused": Scenario("3125551203", lambda: Party(inmate("3125551203", 1051)), lambda: Party(["2"]),
                        about="the recipient presses 2 (refuses)"),
    "recipient-hangs-up": Scenario(
        "3125551209", lambda: Party(inmate("3125551209", 1052)), lambda: Party([HANG_UP]),
        about="the recipient hangs up during the screening Read()"),
    "caller-gone-screening": Scenario(
        "3125551210", lambda: Party(inmate("3125551210", 1053)), lambda: Party([(1.0, CALLER_HANGS_UP)]),
        about="the inmate hangs up 1 s into the screening Read(); the controller hangs up the recipient's "
              "leg over AMI"),
    "deposit-expiry-hash": Scenario(
        "3125551220",
        lambda: Party(["1", "3125551220#", ("@WAIT FOR DIGIT", "1"), ("@WAIT FOR DIGIT", "1"), "25#",
                       f"{VISA}#", "1230#", f"{CVV}#", f"{CVV}#", ("@WAIT FOR DIGIT", "1")]),
        funds=100, station="18005550100", context="from-carrier",
        about="deposit line: the card expiry keyed as 1230# into a 4-digit GET DATA (where does the # go?)"),
}


async def capture(binary: str, name: str, out_dir: Path, root: Path | None = None) -> list[Path]:
    """Run one scenario on its own site and write its transcripts; returns the files written."""
    from ledger import Ledger

    sc = SCENARIOS[name]
    world = RealWorld(binary, root, CALLCONTROL_RING_TIMEOUT=str(RING))
    agi = await CaptureProxy("agi", world.agi_port,
                             lambda n: f"FastAGI session #{n} of scenario {name!r}: {sc.about}").start()
    ami = await CaptureProxy("ami", world.ami_port,
                             lambda n: f"AMI session #{n} (the controller's) of scenario {name!r}: {sc.about}"
                             ).start()
    world.asterisk.agi_port = agi.port                 # Asterisk's CONTROLLER global -> the proxy
    world.controller_env["CALLCONTROL_AMI_PORT"] = str(ami.port)
    try:
        await asyncio.to_thread(world.start)
        ledger = await Ledger.connect(world.redis.url)
        if sc.funds is not None:
            account = await ledger.open_account(f"seed-{name}", FAC, "+1" + sc.number, owner="test")
            await ledger.deposit(f"seed-dep-{name}", account, sc.funds)
        await ledger.close()
        async with NotingSwitch(agi, *world.switch_args()) as sw:
            call = await sw.call(sc.station, sc.handset(), sc.recipient(), context=sc.context, wait=180)
        await asyncio.sleep(3.0)                        # hang-up handler AGI, last AMI actions
        for tx in agi.sessions:
            if not tx.closed:
                tx.note("harness: scenario over")
        for tx in ami.sessions:
            tx.note(f"harness: scenario over (DialStatus {call.dial_status!r})")
        written = _write(name, out_dir, agi.sessions, ami.sessions)
    finally:
        await agi.close()
        await ami.close()
        await asyncio.to_thread(world.stop)
    return written


def _write(name: str, out_dir: Path, agi: list[Transcript], ami: list[Transcript]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob(f"fastagi-{name}-*.txt"), out_dir / f"ami-{name}.txt"]:
        old.unlink(missing_ok=True)
    written: list[Path] = []
    seen: dict[str, int] = {}
    for tx in agi:
        script = tx.script or "unknown"
        seen[script] = seen.get(script, 0) + 1
        suffix = "" if seen[script] == 1 else f"-{seen[script]}"
        path = out_dir / f"fastagi-{name}-{script}{suffix}.txt"
        path.write_text(tx.text())
        written.append(path)
    for n, tx in enumerate(ami, 1):
        path = out_dir / (f"ami-{name}.txt" if n == 1 else f"ami-{name}-{n}.txt")
        path.write_text(tx.text())
        written.append(path)
    return written


async def capture_all(binary: str, names: list[str], out_dir: Path = OUT_DIR) -> list[Path]:
    results = await asyncio.gather(*(capture(binary, n, out_dir) for n in names))
    return [p for paths in results for p in paths]


def main(argv: list[str]) -> int:
    from tests.support.asterisk import find_asterisk

    binary = find_asterisk()
    if binary is None:
        print("no Asterisk: set ASTERISK_SRC or ASTERISK_BIN", file=sys.stderr)
        return 2
    out = Path(argv[0]) if argv and argv[0] not in SCENARIOS else OUT_DIR
    names = [a for a in argv if a in SCENARIOS] or list(SCENARIOS)
    for path in asyncio.run(capture_all(binary, names, out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
