"""Asterisk's side of one FastAGI session: connect to the controller, send the env block, answer commands.

Hang-up signalling follows the captures: a command running when the channel hangs up returns
`200 result=-1` and `HANGUP` follows 40 ms later; an idle session gets `HANGUP` alone; the AGI HANGUP
command gets `200 result=1` then `HANGUP`; a controller half-close gets `HANGUP` then Asterisk closes.
After the hang-up, media commands get 511 while variable commands still answer.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callcontrol.sim import dtmf, wire
from callcontrol.sim.results import AgiTranscript
from callcontrol.sim.scripts import Keys

if TYPE_CHECKING:
    from callcontrol.sim.channels import Channel
    from callcontrol.sim.world import Simulator

HANGUP_NOTICE_DELAY = 0.040  # seconds between `200 result=-1` and `HANGUP` (40-46 ms measured)
SAMPLE_RATE = 8000
FRAME = 0.020

# command words -> (allowed on a dead channel, argc range) ; argc counts the command words
COMMANDS: dict[str, tuple[bool, int, int]] = {
    "ANSWER": (False, 1, 1),
    "ASYNCAGI BREAK": (True, 2, 2),
    "CHANNEL STATUS": (False, 2, 3),
    "CONTROL STREAM FILE": (False, 5, 11),
    "DATABASE DEL": (True, 4, 4),
    "DATABASE DELTREE": (True, 3, 4),
    "DATABASE GET": (True, 4, 4),
    "DATABASE PUT": (True, 5, 5),
    "EXEC": (True, 2, 1 << 30),
    "GET DATA": (False, 3, 5),
    "GET FULL VARIABLE": (True, 4, 5),
    "GET OPTION": (False, 4, 5),
    "GET VARIABLE": (True, 3, 3),
    "HANGUP": (False, 1, 2),
    "NOOP": (True, 1, 1 << 30),
    "RECORD FILE": (False, 6, 9),
    "SAY ALPHA": (False, 4, 4),
    "SAY DIGITS": (False, 4, 4),
    "SAY NUMBER": (False, 4, 5),
    "SET AUTOHANGUP": (False, 3, 3),
    "SET CALLERID": (False, 3, 3),
    "SET CONTEXT": (False, 3, 3),
    "SET EXTENSION": (False, 3, 3),
    "SET MUSIC": (False, 3, 4),
    "SET PRIORITY": (False, 3, 3),
    "SET VARIABLE": (True, 4, 4),
    "STREAM FILE": (False, 4, 5),
    "VERBOSE": (True, 2, 3),
    "WAIT FOR DIGIT": (False, 4, 4),
}
_BY_LEN = sorted(COMMANDS, key=lambda c: -len(c.split()))


_BY_WORDS = {tuple(name.split()): name for name in COMMANDS}


def match_command(args: list[str]) -> str | None:
    """The longest known command made of the first words (case-insensitive), or None."""
    for n in (3, 2, 1):
        if len(args) >= n:
            name = _BY_WORDS.get(tuple(map(str.upper, args[:n])))
            if name is not None:
                return name
    return None


def samples_at(elapsed: float) -> int:
    """endpos Asterisk reports when a key stops playback `elapsed` seconds in (one 20 ms frame read ahead)."""
    return (math.floor(elapsed / FRAME + 1e-9) + 1) * int(SAMPLE_RATE * FRAME)


def number_files(n: int) -> list[str]:
    """English SAY NUMBER prompt files."""
    if n < 0:
        return ["digits/minus", *number_files(-n)]
    if n < 20:
        return [f"digits/{n}"]
    if n < 100:
        tens, rest = divmod(n, 10)
        return [f"digits/{tens * 10}"] + ([f"digits/{rest}"] if rest else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [f"digits/{hundreds}", "digits/hundred"] + (number_files(rest) if rest else [])
    thousands, rest = divmod(n, 1000)
    return [*number_files(thousands), "digits/thousand"] + (number_files(rest) if rest else [])


class _Lines(asyncio.Protocol):
    """The controller's side of the socket as lines: cheaper than streams for one line per command.

    The connection stays writable after the controller half-closes (Asterisk answers that with HANGUP).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = b""
        self.lines: deque[bytes] = deque()
        self.eof = False
        self.waiter: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            self.lines.append(buf[start:nl + 1])
            start = nl + 1
        self.buf = buf[start:] if start else buf
        if self.lines:
            self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    async def readline(self) -> bytes:
        """The next line with its newline; at EOF what is left of a partial line (or b"")."""
        while not self.lines:
            if self.eof:
                rest, self.buf = self.buf, b""
                return rest
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.lines.popleft()


@dataclass
class Outcome:
    data: bytes
    interrupted: bool = False  # -1 because the channel hung up while the command ran
    hangup_now: bool = False  # AGI HANGUP command: HANGUP line follows
    died: bool = False  # the channel hung up while an application ran that still answered 0 (Read)
    code: int = 200


class AgiSession:
    """One FastAGI connection for `chan`, running `script` (path?query) with `args`."""

    def __init__(
        self, sim: Simulator, chan: Channel, request: str, args: list[str], *, dead_from_start: bool = False
    ) -> None:
        self.sim = sim
        self.chan = chan
        self.request = request  # agi://host:port/script?query
        self.args = args
        self.script = request.split("/", 3)[3] if request.count("/") >= 3 else request
        self.transcript = AgiTranscript(script=self.script.split("?")[0], channel=chan.name)
        self.hangup_sent = dead_from_start
        self.dead_from_start = dead_from_start
        self.busy = False
        self.ncommands = 0
        self._writer: asyncio.Transport | None = None
        self._conn: _Lines | None = None

    # ------------------------------------------------------------------ io
    def _send(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(data)
        self.transcript.chunks.append((self.sim.clock.monotonic(), ">>", data))

    def env(self) -> list[tuple[str, str]]:
        c = self.chan
        pairs = [
            ("agi_network", "yes"),
            ("agi_network_script", self.script),
            ("agi_request", self.request),
            ("agi_channel", c.name),
            ("agi_language", c.language),
            ("agi_type", c.name.split("/", 1)[0]),
            ("agi_uniqueid", c.uniqueid),
            ("agi_version", wire.AGI_VERSION),
            ("agi_callerid", c.cid_num or "unknown"),
            ("agi_calleridname", c.cid_name or "unknown"),
            ("agi_callingpres", "0"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", c.dnid or "unknown"),
            ("agi_rdnis", "unknown"),
            ("agi_context", c.context),
            ("agi_extension", c.exten),
            ("agi_priority", str(c.priority)),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", c.accountcode),
            ("agi_threadid", str(self.sim.next_threadid())),
        ]
        pairs += [(f"agi_arg_{i}", a) for i, a in enumerate(self.args, 1)]
        return pairs

    async def run(self) -> str:
        """Run the session to its end; returns AGISTATUS (SUCCESS, HANGUP or FAILURE)."""
        loop = asyncio.get_running_loop()
        for host, port in self.sim.controller_order():
            try:
                _, conn = await loop.create_connection(lambda: _Lines(loop), host, port)
                break
            except OSError:
                continue
        else:
            self.transcript.status = "FAILURE"
            return "FAILURE"
        self._writer = conn.transport
        self._conn = conn
        self.sim.stats["agi_sessions"] += 1
        self._send(wire.env_block(self.env()))
        watcher = asyncio.ensure_future(self._watch_hangup())
        try:
            while True:
                line = await conn.readline()
                if not line or not line.endswith(b"\n"):
                    # res_agi ends every FastAGI session it did not end itself with HANGUP, even when
                    # one was sent already (captured: advancepay/fastagi-*-screen after a hang-up).
                    self.hangup_sent = True
                    self._send(wire.HANGUP_LINE)
                    break
                self.transcript.chunks.append((self.sim.clock.monotonic(), "<<", line))
                self.busy = True
                try:
                    await self._handle(line)
                finally:
                    self.busy = False
        finally:
            watcher.cancel()
            conn.transport.close()
            await conn.closed
        status = "HANGUP" if self.chan.dead else "SUCCESS"
        self.transcript.status = status
        return status

    async def _watch_hangup(self) -> None:
        if self.hangup_sent:
            return
        await asyncio.shield(self.chan.hangup_future())
        if not self.busy and not self.hangup_sent:
            self.hangup_sent = True
            self._send(wire.HANGUP_LINE)

    async def _handle(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip("\r\n")
        self.ncommands += 1
        handset = self.chan.extra.get("handset")
        if handset is not None and handset.hangup_at_command == self.ncommands and not self.chan.dead:
            asyncio.get_running_loop().call_soon(self.chan.soft_hangup, 16, "handset")
        act = self.chan.script.take_hangup(line)
        if act is not None:
            self.sim.schedule_hangup(
                self.chan, act.after, "handset" if self.chan.role == "caller" else "recipient"
            )
        bus = self.sim.events
        if not bus.listening:                # nobody on AMI: no CommandId drawn, no event built
            outcome = await self.execute(line)
            self._send(outcome.data)
            bus.count += 2
        else:
            command_id = str(self.sim.rng.randint(1, 2**31 - 1))
            self.chan.event("AGIExecStart", "agi,all", [("CommandId", command_id), ("Command", line)])
            outcome = await self.execute(line)
            self._send(outcome.data)
            self.chan.event(
                "AGIExecEnd", "agi,all",
                [("CommandId", command_id), ("Command", line), *_result_fields(outcome)],
            )
        if (outcome.hangup_now or self.chan.dead) and not self.hangup_sent:
            if outcome.interrupted or outcome.hangup_now or outcome.died:
                await self._notice_window()
            if not self.hangup_sent:
                self.hangup_sent = True
                self._send(wire.HANGUP_LINE)

    async def _notice_window(self) -> None:
        """The 40 ms between a command's reply on a hung-up channel and the `HANGUP` line. A command
        arriving meanwhile gets `HANGUP` at once and its reply when the 40 ms are over; a half-close gets
        `HANGUP` at once (then the end-of-session one). Captured in advancepay/fastagi-*."""
        conn = self._conn
        sleeper = asyncio.ensure_future(self.sim.clock.sleep(HANGUP_NOTICE_DELAY))
        try:
            while not sleeper.done():
                if conn is not None and (conn.lines or conn.eof):
                    self.hangup_sent = True
                    self._send(wire.HANGUP_LINE)
                    if not conn.lines:
                        return
                    break
                if conn is None:
                    break
                conn.waiter = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait({sleeper, conn.waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    conn.waiter = None
            await sleeper
        finally:
            sleeper.cancel()

    # ------------------------------------------------------------ commands
    async def execute(self, line: str) -> Outcome:
        args = wire.parse_agi_args(line)
        name = match_command(args) if args else None
        if name is None:
            return Outcome(wire.INVALID_510, code=510)
        dead_ok, lo, hi = COMMANDS[name]
        if (self.chan.dead or self.hangup_sent) and not dead_ok:
            return Outcome(wire.DEAD_511, code=511)
        if not lo <= len(args) <= hi:
            return Outcome(wire.usage_520(name), code=520)
        handler = getattr(self, "cmd_" + name.lower().replace(" ", "_"), None)
        if handler is None:
            return Outcome(wire.reply(0))
        outcome: Outcome = await handler(args)
        return outcome

    async def cmd_answer(self, args: list[str]) -> Outcome:
        # Asterisk waits up to 500 ms for media after answering these channels.
        if self.chan.answer() and not await self.chan.pause(self.sim.config.answer_media_wait):
            return Outcome(wire.reply(-1), interrupted=True)
        return Outcome(wire.reply(0))

    async def cmd_asyncagi_break(self, args: list[str]) -> Outcome:
        return Outcome(wire.reply(0))

    async def cmd_hangup(self, args: list[str]) -> Outcome:
        target = self.chan if len(args) < 2 else self.sim.channels.get(args[1])
        if target is None:
            return Outcome(wire.reply(-1))
        self.sim.soft_hangup_event(target, 32)
        target.soft_hangup(16, "controller")
        return Outcome(wire.reply(1), hangup_now=target is self.chan)

    async def cmd_channel_status(self, args: list[str]) -> Outcome:
        target = self.chan if len(args) < 3 else self.sim.channels.get(args[2])
        return Outcome(wire.reply(-1 if target is None else target.state))

    async def cmd_get_variable(self, args: list[str]) -> Outcome:
        return Outcome(wire.value_reply(self.chan.get_var(args[2])))

    async def cmd_get_full_variable(self, args: list[str]) -> Outcome:
        from callcontrol.sim.dialplan import substitute

        target = self.chan if len(args) < 5 else self.sim.channels.get(args[4])
        if target is None:
            return Outcome(wire.reply(0))
        return Outcome(wire.value_reply(substitute(args[3], target)))

    async def cmd_set_variable(self, args: list[str]) -> Outcome:
        self.chan.set_var(args[2], args[3])
        return Outcome(wire.reply(1))

    async def cmd_verbose(self, args: list[str]) -> Outcome:
        return Outcome(wire.reply(1))

    async def cmd_noop(self, args: list[str]) -> Outcome:
        return Outcome(wire.reply(0))

    async def cmd_set_music(self, args: list[str]) -> Outcome:
        return Outcome(wire.reply(0))

    async def cmd_set_autohangup(self, args: list[str]) -> Outcome:
        seconds = float(args[2] or 0)
        if seconds > 0:
            self.sim.schedule_hangup(self.chan, seconds, "autohangup")
        return Outcome(wire.reply(0))

    async def cmd_set_callerid(self, args: list[str]) -> Outcome:
        self.chan.cid_num = args[2].strip("<>")
        return Outcome(wire.reply(1))

    async def cmd_set_context(self, args: list[str]) -> Outcome:
        self.chan.context = args[2]
        return Outcome(wire.reply(0))

    async def cmd_set_extension(self, args: list[str]) -> Outcome:
        self.chan.exten = args[2]
        return Outcome(wire.reply(0))

    async def cmd_set_priority(self, args: list[str]) -> Outcome:
        self.chan.priority = int(args[2]) if args[2].isdigit() else self.chan.priority
        return Outcome(wire.reply(0))

    async def cmd_database_get(self, args: list[str]) -> Outcome:
        value = self.sim.astdb.get((args[2], args[3]))
        return Outcome(wire.reply(0) if value is None else f"200 result=1 ({value})\n".encode())

    async def cmd_database_put(self, args: list[str]) -> Outcome:
        self.sim.astdb[(args[2], args[3])] = args[4]
        return Outcome(wire.reply(1))

    async def cmd_database_del(self, args: list[str]) -> Outcome:
        return Outcome(wire.reply(1 if self.sim.astdb.pop((args[2], args[3]), None) is not None else 0))

    async def cmd_database_deltree(self, args: list[str]) -> Outcome:
        for key in [k for k in self.sim.astdb if k[0] == args[2]]:
            del self.sim.astdb[key]
        return Outcome(wire.reply(1))

    # ---------------------------------------------------------------- media
    async def _play(self, files: list[str], escape: str, cmdline: str) -> tuple[str | int, float]:
        """Play files in sequence; returns (digit | 0 | -1 on hang-up | -2 on missing file, elapsed)."""
        durations: list[float] = []
        for f in files:
            d = self.sim.prompt_seconds(f)
            if d is None:
                return -2, 0.0
            durations.append(d)
        total = sum(durations)
        key = self.chan.script.take_interrupt(cmdline, escape) if escape else None
        if key is not None and key.after >= total:
            self.chan.script.push_front(key)
            key = None
        for f in files:
            self.chan.prompts.append(f)
        wait = key.after if key is not None else total
        ok = await self.chan.pause(wait)
        if not ok:
            return -1, wait
        if key is not None:
            self.chan.keys.append(key.digits[0])
            return key.digits[0], key.after
        return 0, total

    async def cmd_stream_file(self, args: list[str]) -> Outcome:
        res, elapsed = await self._play([args[2]], args[3], " ".join(args))
        if res == -2:
            return Outcome(wire.reply(-1, "endpos=0"))
        if res == -1:
            return Outcome(wire.reply(-1, f"endpos={samples_at(elapsed)}"), interrupted=True)
        if res == 0:
            return Outcome(wire.reply(0, f"endpos={round(elapsed * SAMPLE_RATE)}"))
        self.chan.set_var("PLAYBACKSTATUS", "SUCCESS", event=False)
        return Outcome(wire.reply(ord(str(res)), f"endpos={samples_at(elapsed)}"))

    async def cmd_control_stream_file(self, args: list[str]) -> Outcome:
        res, _ = await self._play([args[3]], args[4], " ".join(args))
        if res == -2:
            return Outcome(wire.reply(0))
        if res == -1:
            return Outcome(wire.reply(-1), interrupted=True)
        return Outcome(wire.reply(0 if res == 0 else ord(str(res))))

    async def _say(self, files: list[str], escape: str, cmdline: str) -> Outcome:
        res, _ = await self._play(
            [f for f in files if self.sim.prompt_seconds(f) is not None], escape, cmdline
        )
        if res == -1:
            return Outcome(wire.reply(-1), interrupted=True)
        if res in (0, -2):
            return Outcome(wire.reply(0))
        return Outcome(wire.reply(ord(str(res))))

    async def cmd_say_digits(self, args: list[str]) -> Outcome:
        return await self._say([f"digits/{c}" for c in args[2] if c.isdigit()], args[3], " ".join(args))

    async def cmd_say_alpha(self, args: list[str]) -> Outcome:
        files = [f"digits/{c}" if c.isdigit() else f"letters/{c.lower()}" for c in args[2] if c.isalnum()]
        return await self._say(files, args[3], " ".join(args))

    async def cmd_say_number(self, args: list[str]) -> Outcome:
        try:
            n = int(args[2])
        except ValueError:
            return Outcome(wire.reply(-1))
        return await self._say(number_files(n), args[3], " ".join(args))

    async def cmd_wait_for_digit(self, args: list[str]) -> Outcome:
        try:
            timeout_ms = int(args[3])
        except ValueError:
            return Outcome(wire.usage_520("WAIT FOR DIGIT"), code=520)
        limit = None if timeout_ms < 0 else timeout_ms / 1000
        act = self.chan.script.take_input(" ".join(args))
        if isinstance(act, Keys) and (limit is None or act.after < limit):
            if not await self.chan.pause(act.after):
                return Outcome(wire.reply(-1), interrupted=True)
            self.chan.keys.append(act.digits[0])
            return Outcome(wire.reply(ord(act.digits[0])))
        if not await self.chan.pause(limit):
            return Outcome(wire.reply(-1), interrupted=True)
        return Outcome(wire.reply(0))

    async def cmd_get_option(self, args: list[str]) -> Outcome:
        res, elapsed = await self._play([args[2]], args[3], " ".join(args))
        if res == -1:
            return Outcome(wire.reply(-1, "endpos=0"), interrupted=True)
        if res not in (0, -2):
            return Outcome(wire.reply(ord(str(res)), f"endpos={samples_at(elapsed)}"))
        timeout = float(args[4]) / 1000 if len(args) > 4 else 5.0
        outcome = await self.cmd_wait_for_digit(["WAIT", "FOR", "DIGIT", str(int(timeout * 1000))])
        return outcome

    async def cmd_get_data(self, args: list[str]) -> Outcome:
        cmdline = " ".join(args)
        prompt = self.sim.prompt_seconds(args[2]) or 0.0
        self.chan.prompts.append(args[2])
        timeout = int(args[3]) / 1000 if len(args) > 3 and args[3].lstrip("-").isdigit() else 0.0
        if timeout <= 0:
            timeout = 6.0
        maxdigits = int(args[4]) if len(args) > 4 and args[4].isdigit() else 1024
        digits, how = await dtmf.collect(self.chan, cmdline, prompt, timeout, maxdigits)
        if how == dtmf.HANGUP:
            return Outcome(wire.reply(-1), interrupted=True)
        if how == dtmf.TIMEOUT:
            return Outcome(wire.reply(digits, "(timeout)"))
        return Outcome(wire.reply(digits))

    async def cmd_record_file(self, args: list[str]) -> Outcome:
        cmdline = " ".join(args)
        escape = args[4]
        try:
            timeout_ms = int(args[5])
        except ValueError:
            return Outcome(wire.usage_520("RECORD FILE"), code=520)
        beep = any(a.upper() == "BEEP" for a in args[6:])
        writable = self.sim.config.writable_dirs
        if writable is not None and args[2].rpartition("/")[0] not in writable:
            return Outcome(wire.reply(-1, "(writefile)"))
        self.chan.recordings.append(f"{args[2]}.{args[3]}")
        now = 0.0
        act = self.chan.script.take_input(cmdline)
        if beep:
            self.chan.prompts.append("beep")
            now = self.sim.prompt_seconds("beep") or 0.0
            if isinstance(act, Keys) and act.digits[0] in escape and act.after < now:
                # a key during the beep: res_agi says "randomerror" (captured: advancepay/*-inmate-call)
                if not await self.chan.pause(act.after):
                    return Outcome(wire.reply(-1, "(hangup) endpos=0"), interrupted=True)
                self.chan.keys.append(act.digits[0])
                return Outcome(wire.reply(ord(act.digits[0]), "(randomerror) endpos=0"))
            if not await self.chan.pause(now):
                return Outcome(wire.reply(-1, "(hangup) endpos=0"), interrupted=True)
        limit = None if timeout_ms < 0 else now + timeout_ms / 1000
        if isinstance(act, Keys) and act.digits[0] in escape and (limit is None or act.after < limit):
            if not await self.chan.pause(max(0.0, act.after - now)):
                return Outcome(wire.reply(-1, "(hangup) endpos=0"), interrupted=True)
            self.chan.keys.append(act.digits[0])
            return Outcome(wire.reply(ord(act.digits[0]), "(dtmf) endpos=0"))
        if not await self.chan.pause(None if limit is None else limit - now):
            return Outcome(wire.reply(-1, "(hangup) endpos=0"), interrupted=True)
        return Outcome(wire.reply(0, "(timeout) endpos=0"))

    async def cmd_exec(self, args: list[str]) -> Outcome:
        app = args[1]
        data = " ".join(args[2:])
        res = await self.sim.apps.run(self.chan, app, data)
        if res is None:
            return Outcome(wire.reply(-2))
        if res == -1 and self.chan.dead:
            return Outcome(wire.reply(-1), interrupted=True)
        if self.chan.dead:        # Read() on a hang-up: 200 result=0, then the HANGUP notice as after -1
            return Outcome(wire.reply(res), died=True)
        return Outcome(wire.reply(res))


def _result_fields(outcome: Outcome) -> list[tuple[str, str]]:
    if outcome.interrupted:
        return [("ResultCode", "-1"), ("Result", "Failure")]
    if outcome.code == 511:
        return [
            ("ResultCode", "511"),
            ("Result", "Command Not Permitted on a dead channel or intercept routine"),
        ]
    if outcome.code == 510:
        return [("ResultCode", "510"), ("Result", "Invalid or unknown command")]
    if outcome.code == 520:
        return [("ResultCode", "520"), ("Result", "Usage")]
    return [("ResultCode", "200"), ("Result", "Success")]
