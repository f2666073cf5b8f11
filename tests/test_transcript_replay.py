"""Replays of the real Asterisk 22 transcripts against our FastAGI server and AMI client over real TCP.

(1) every Asterisk reply line is interpreted as the transcript shows; (2) a tiny "Asterisk" peer sends
each FastAGI transcript's env block and answers each command with the transcript's bytes while a route
handler issues the same commands through the AGIChannel API: our bytes must equal every ``<<`` line;
(3) the same for AMI with a loopback server speaking the transcript's bytes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from callcontrol.asterisk.agi import AGIChannel, AGIError, AGIHangup, AGIServer
from callcontrol.asterisk.agi_wire import (
    HANGUP_LINE,
    AGIReply,
    Quoted,
    ReplyAssembler,
    quote_arg,
    split_command,
)
from callcontrol.asterisk.ami import AMIAuthError, AMIClient, AMIError
from callcontrol.asterisk.ami_wire import Message, parse_messages
from tests.support import transcripts as tx

FASTAGI = tx.fastagi_files()
MEDIA = {"STREAM FILE", "WAIT FOR DIGIT", "GET DATA", "SAY DIGITS", "SAY NUMBER", "RECORD FILE", "ANSWER"}
COMMANDS = sorted(
    ["ANSWER", "HANGUP", "CHANNEL STATUS", "GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE",
     "STREAM FILE", "GET DATA", "SAY DIGITS", "SAY NUMBER", "WAIT FOR DIGIT", "RECORD FILE", "EXEC"],
    key=len, reverse=True,
)


def test_transcripts_present() -> None:
    names = {p.name for p in FASTAGI}
    assert len(FASTAGI) == 8 and "fastagi-inmate-call.txt" in names


# ----------------------------------------------------------------------------- (1) reply parsing


def _replies(lines: list[bytes]) -> list[AGIReply | object]:
    asm = ReplyAssembler()
    out = []
    for line in lines:
        item = asm.feed(line)
        if item is not None:
            out.append(item)
    assert not asm.in_block
    return out


@pytest.mark.parametrize("path", FASTAGI, ids=lambda p: p.name)
def test_every_reply_line_is_interpreted(path: Any) -> None:
    view = tx.agi_view(tx.load(path).session)
    for ex in view.exchanges:
        items = _replies(ex.after)
        replies = [i for i in items if isinstance(i, AGIReply)]
        hangups = [i for i in items if i is HANGUP_LINE]
        assert len(replies) == 1, (ex.command, ex.after)  # strictly one reply per command, in order
        assert items[0] is replies[0]  # a HANGUP line never precedes or replaces the reply
        assert len(hangups) == ex.after.count(b"HANGUP\n")
        reply = replies[0]
        first = ex.after[0].decode().rstrip("\n")
        assert reply.code == int(first[:3])
        if reply.code == 520:
            assert reply.text.startswith("520-Invalid command syntax.")
            assert reply.text.endswith("520 End of proper usage.")
            assert reply.text.count("\n") == len(ex.after) - 1 - len(hangups)
        else:
            assert reply.text == first
        m = re.fullmatch(r"200 result=(-?\d*)(?: \((.*)\))?(?: endpos=(\d+))?", first)
        if reply.code == 200:
            assert m, first
            assert reply.raw_result == m.group(1)
            assert reply.result == (int(m.group(1)) if m.group(1) else None)
            assert reply.data == m.group(2)
            assert reply.endpos == (int(m.group(3)) if m.group(3) else None)
    for line in view.after_close:
        assert _replies([line]) == [HANGUP_LINE]


@pytest.mark.parametrize(
    ("line", "code", "result", "raw", "data", "endpos"),
    [
        (b"200 result=0 endpos=3520\n", 200, 0, "0", None, 3520),
        (b"200 result=1 (4455)\n", 200, 1, "1", "4455", None),
        (b"200 result=0\n", 200, 0, "0", None, None),
        (b"200 result= (timeout)\n", 200, None, "", "timeout", None),
        (b"200 result=1234\n", 200, 1234, "1234", None, None),
        (b"200 result=-1 endpos=0\n", 200, -1, "-1", None, 0),
        (b"200 result=53 endpos=8480\n", 200, 53, "53", None, 8480),
        (b"200 result=0 (timeout) endpos=0\n", 200, 0, "0", "timeout", 0),
        (b"200 result=35 (dtmf) endpos=0\n", 200, 35, "35", "dtmf", 0),
        (b"200 result=-2\n", 200, -2, "-2", None, None),
        (b"200 result=1 ()\n", 200, 1, "1", "", None),
        (b'200 result=1 ("Inmate 0042" <100>)\n', 200, 1, "1", '"Inmate 0042" <100>', None),
        (b"200 result=1 (100|Local/100@facility-phones-00000000;2|0)\n", 200, 1, "1",
         "100|Local/100@facility-phones-00000000;2|0", None),
        (b"510 Invalid or unknown command\n", 510, None, "", None, None),
        (b"511 Command Not Permitted on a dead channel or intercept routine\n", 511, None, "", None, None),
    ],
)
def test_reply_forms(line: bytes, code: int, result: int | None, raw: str, data: str | None,
                     endpos: int | None) -> None:
    [reply] = _replies([line])
    assert isinstance(reply, AGIReply)
    assert (reply.code, reply.result, reply.raw_result, reply.data, reply.endpos) == (
        code, result, raw, data, endpos)


# ----------------------------------------------------------------------------- (2) FastAGI replay


async def _data(reply: Awaitable[AGIReply]) -> str | None:
    r = await reply
    return r.data if r.result == 1 else None


async def _none(reply: Awaitable[AGIReply]) -> None:
    await reply


def api_call(ch: AGIChannel, line: bytes) -> Callable[[], Awaitable[Any]]:
    """The AGIChannel call that issues the transcript's command line.

    The harness that made the transcripts quoted a few values that need no quotes (``"screening"``,
    ``"yes"``) and left one expression unquoted; those go through ``send`` with ``Quoted``/plain args.
    Everything else goes through the high-level methods.
    """
    text = line.decode().rstrip("\n")
    cmd = next((c for c in COMMANDS if text == c or text.startswith(c + " ")), None)
    args = split_command(text[len(cmd):]) if cmd else []
    raw_args = text[len(cmd):].split() if cmd else []
    if cmd is None:
        return lambda: ch.send(*split_command(text))
    n = len(args)
    match cmd, n:
        case "ANSWER", 0:
            return ch.answer
        case "HANGUP", 0:
            return ch.hangup
        case "CHANNEL STATUS", 0:
            return ch.channel_status
        case "GET VARIABLE", 1:
            return lambda: ch.get_variable(args[0])
        case "GET FULL VARIABLE", 1:
            if raw_args[0].startswith('"'):
                return lambda: ch.get_full_variable(args[0])
            return lambda: _data(ch.send("GET FULL VARIABLE", args[0]))
        case "SET VARIABLE", 2:
            if quote_arg(args[1]) != raw_args[-1]:
                return lambda: _none(ch.send("SET VARIABLE", args[0], Quoted(args[1])))
            return lambda: ch.set_variable(args[0], args[1])
        case "VERBOSE", 2:
            return lambda: ch.verbose(args[0], int(args[1]))
        case "STREAM FILE", 2:
            return lambda: ch.stream_file(args[0], args[1])
        case "GET DATA", 3:
            return lambda: ch.get_data(args[0], int(args[1]), int(args[2]))
        case "SAY DIGITS", 2:
            return lambda: ch.say_digits(args[0], args[1])
        case "SAY NUMBER", 2:
            return lambda: ch.say_number(int(args[0]), args[1])
        case "WAIT FOR DIGIT", 1:
            return lambda: ch.wait_for_digit(int(args[0]))
        case "RECORD FILE", 4 | 5:
            return lambda: ch.record_file(args[0], args[1], args[2], int(args[3]), beep=n == 5)
        case "EXEC", 2:
            return lambda: ch.exec(args[0], *args[1].split(","))
    return lambda: ch.send(cmd, *args)  # malformed on purpose (520 cases)


def expected_outcome(command: bytes, after: list[bytes]) -> tuple[Any, ...]:
    """Independent oracle: what the API call must produce, from the transcript's reply bytes."""
    text = command.decode().rstrip("\n")
    cmd = next((c for c in COMMANDS if text == c or text.startswith(c + " ")), text)
    first = after[0].decode().rstrip("\n")
    hangup_follows = b"HANGUP\n" in after[1:]
    code = int(first[:3])
    if code == 511:
        return ("ok", None) if cmd == "HANGUP" else ("hangup",)
    if code != 200:
        return ("error", code)
    m = re.fullmatch(r"200 result=(-?\d*)(?: \((.*)\))?(?: endpos=(\d+))?", first)
    assert m
    raw, data = m.group(1), m.group(2)
    if cmd == "EXEC":
        return ("error", 200) if raw == "-2" else ("ok", int(raw))
    if cmd in MEDIA and raw == "-1" and hangup_follows:
        return ("hangup",)
    if cmd in ("STREAM FILE", "WAIT FOR DIGIT", "SAY DIGITS", "SAY NUMBER"):
        return ("ok", chr(int(raw)) if int(raw) > 0 else "")
    if cmd == "GET DATA":
        return ("ok", None if raw == "" and data == "timeout" else raw)
    if cmd in ("GET VARIABLE", "GET FULL VARIABLE"):
        return ("ok", data if raw == "1" else None)
    if cmd == "CHANNEL STATUS":
        return ("ok", int(raw))
    if cmd == "RECORD FILE":
        return ("ok", (int(raw), data, int(m.group(3))))
    return ("ok", None)


def outcome_of(value: Any) -> tuple[Any, ...]:
    if isinstance(value, AGIReply):
        return ("ok", (value.result, value.data, value.endpos))
    return ("ok", value)


async def run_agi_replay(path: Any) -> dict[str, Any]:
    view = tx.agi_view(tx.load(path).session)
    script = tx.agi_view(tx.load(path).session)
    target = dict(line.decode().rstrip("\n").split(": ", 1) for line in view.env[:-1] if b": " in line)
    route = target["agi_network_script"].split("?")[0]
    result: dict[str, Any] = {"outcomes": [], "hungup_after": []}
    done = asyncio.Event()

    async def handler(ch: AGIChannel) -> None:
        result["channel"] = ch
        try:
            for ex in script.exchanges:
                call = api_call(ch, ex.command)
                try:
                    outcome = outcome_of(await call())
                except AGIHangup:
                    outcome = ("hangup",)
                except AGIError as exc:
                    outcome = ("error", exc.reply.code if exc.reply else None)
                result["outcomes"].append(outcome)
                if b"HANGUP\n" in ex.after:
                    await asyncio.wait_for(ch.hangup_event.wait(), 2.0)
                result["hungup_after"].append(ch.hungup)
        finally:
            done.set()

    server = AGIServer({route: handler}, allow=["127.0.0.1"], hangup_grace=0.15, close_grace=2.0)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"".join(view.env))
        await writer.drain()
        received: list[bytes] = []
        for ex in view.exchanges:
            received.append(await asyncio.wait_for(reader.readline(), 5.0))
            for line in ex.after:
                if line == b"HANGUP\n":
                    await asyncio.sleep(0.02)  # Asterisk sends HANGUP ~40 ms after the reply
                writer.write(line)
            await writer.drain()
        tail = await asyncio.wait_for(reader.read(), 5.0)  # our half-close: EOF, nothing else
        result["eof_after_last_command"] = tail == b""
        for line in view.after_close:
            writer.write(line)
        await writer.drain()
        writer.close()
        await asyncio.wait_for(done.wait(), 5.0)
        for _ in range(100):
            if server.active_sessions == 0:
                break
            await asyncio.sleep(0.01)
        result["active_after"] = server.active_sessions
    finally:
        await server.stop()
    result["received"] = received
    result["view"] = view
    return result


@pytest.mark.parametrize("path", FASTAGI, ids=lambda p: p.name)
def test_fastagi_replay(path: Any) -> None:
    r = asyncio.run(run_agi_replay(path))
    view = r["view"]
    assert r["received"] == [ex.command for ex in view.exchanges]  # byte-exact, in order
    assert r["eof_after_last_command"]
    assert r["active_after"] == 0
    expected = [expected_outcome(ex.command, ex.after) for ex in view.exchanges]
    assert r["outcomes"] == expected
    ch: AGIChannel = r["channel"]
    # The first HANGUP line in the transcript is where we must first consider the channel hung up.
    first_hangup = next((i for i, ex in enumerate(view.exchanges) if b"HANGUP\n" in ex.after), None)
    flags = r["hungup_after"]
    if first_hangup is None:
        assert not any(flags)
    else:
        assert not any(flags[:first_hangup]) and all(flags[first_hangup:])
    assert ch.hungup
    if view.after_close:
        assert ch.hangup_reason == "hangup-line"  # HANGUP answered our half-close


def test_fastagi_replay_inmate_call_values() -> None:
    r = asyncio.run(run_agi_replay(tx.TRANSCRIPT_DIR / "fastagi-inmate-call.txt"))
    got = {ex.command: o for ex, o in zip(r["view"].exchanges, r["outcomes"], strict=True)}
    assert got[b"GET VARIABLE INMATE_PIN\n"] == ("ok", "4455")
    assert got[b"GET VARIABLE NO_SUCH_VARIABLE\n"] == ("ok", None)
    assert got[b'SET VARIABLE CALL_NOTE "two words"\n'] == ("ok", None)
    assert got[b"GET VARIABLE CALL_NOTE\n"] == ("ok", "two words")
    assert got[b'STREAM FILE vm-intro "567"\n'] == ("ok", "5")
    assert got[b'STREAM FILE no-such-sound-file ""\n'] == ("ok", "")  # missing file: alive, not a hang-up
    assert got[b"WAIT FOR DIGIT 5000\n"] == ("ok", "7")
    assert got[b"WAIT FOR DIGIT 2000\n"] == ("ok", "")
    assert got[b"GET DATA beep 3000 6\n"] == ("ok", "99")
    assert got[b'RECORD FILE /tmp/y wav "#" 10000 BEEP\n'] == ("ok", (35, "dtmf", 0))
    assert got[b"EXEC NoSuchApplication foo\n"] == ("error", 200)
    assert got[b"EXEC Dial Local/5551234@recipient-sim,30,U(accept-sub)\n"] == ("ok", -1)
    assert got[b"FOO BAR BAZ\n"] == ("error", 510)
    assert got[b"STREAM FILE\n"] == ("error", 520)
    gd = [o for ex, o in zip(r["view"].exchanges, r["outcomes"], strict=True)
          if ex.command == b"GET DATA beep 3000 4\n"]
    assert gd == [("ok", None), ("ok", "1234")]
    # After our own HANGUP: GET VARIABLE still works, media and ANSWER get 511 -> AGIHangup.
    assert r["outcomes"][-4:] == [("ok", "CHANUNAVAIL"), ("hangup",), ("hangup",), ("hangup",)]


def test_fastagi_replay_caller_hangup_values() -> None:
    r = asyncio.run(run_agi_replay(tx.TRANSCRIPT_DIR / "fastagi-caller-hangup.txt"))
    assert r["outcomes"] == [
        ("ok", None), ("ok", ""), ("hangup",),  # WAIT FOR DIGIT: 200 result=-1 then HANGUP
        ("hangup",), ("ok", "INM-0101"), ("ok", "16"), ("hangup",), ("hangup",), ("hangup",),
        ("ok", None), ("ok", "yes"), ("ok", None), ("ok", None), ("error", 510),
    ]
    assert r["hungup_after"][:2] == [False, False] and all(r["hungup_after"][2:])


# ----------------------------------------------------------------------------- (3) AMI replay


class AMIReplayServer:
    """Loopback 'Asterisk': banner, then for each expected client message the transcript's answer."""

    def __init__(self, view: tx.AMISession, skip: set[int]) -> None:
        self.view = view
        self.steps = [s for i, s in enumerate(view.steps) if i not in skip]
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.finished = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.view.banner + b"".join(self.view.before))
            for step in self.steps:
                msg = b""
                while True:
                    line = await asyncio.wait_for(reader.readline(), 5.0)
                    if not line:
                        return
                    msg += line
                    if line == b"\r\n":
                        break
                self.received.append(msg)
                writer.write(b"".join(step.replies))
                await writer.drain()
        finally:
            writer.close()  # Asterisk closes after Goodbye / Authentication failed
            self.finished.set()

    async def stop(self) -> None:
        if self.server:
            self.server.close()


def _ids(steps: list[tx.AMIStep]) -> Callable[[], str]:
    ids = [m.group(1).decode() for s in steps if (m := re.search(rb"ActionID: ([^\r]+)\r\n", s.sent))]
    return iter(ids).__next__


def _skip_without_action_id(view: tx.AMISession) -> set[int]:
    """Messages our client never sends: an action without ActionID, or any action before Login."""
    login = next(i for i, s in enumerate(view.steps) if s.sent.startswith(b"Action: Login\r\n"))
    return {i for i, s in enumerate(view.steps) if i < login or b"ActionID:" not in s.sent}


def test_ami_replay_login() -> None:
    view = tx.ami_view(tx.load("ami-login.txt").session)
    skip = _skip_without_action_id(view)
    assert [view.steps[i].notes for i in skip] == [["Ping without ActionID"]]

    async def main() -> tuple[AMIReplayServer, dict[str, Any]]:
        srv = AMIReplayServer(view, skip)
        port = await srv.start()
        kept = [s for i, s in enumerate(view.steps) if i not in skip]
        ami = AMIClient("127.0.0.1", port, "ctl", "ctlsecret", events=True, ping_interval=None,
                        action_id_factory=_ids(kept))
        events: list[Message] = []
        ami.on_event("*", events.append)
        out: dict[str, Any] = {}
        await ami.connect()
        out["banner"] = ami.banner
        out["ping"] = await ami.ping()
        out["settings"] = await ami.action("CoreSettings")
        out["status"] = await ami.action("CoreStatus")
        with pytest.raises(AMIError) as e1:
            await ami.action("NoSuchAction")
        out["unknown"] = e1.value.message
        out["global"] = await ami.getvar("NO_SUCH_GLOBAL")
        with pytest.raises(AMIError) as e2:
            await ami.getvar("X", channel="Local/nothere@x-00000000;1")
        out["nochan"] = e2.value.message
        with pytest.raises(AMIError) as e3:
            await ami.hangup("Local/nothere@x-00000000;1", cause=None)
        out["hangup"] = e3.value.message
        out["channels"] = await ami.core_show_channels()
        await ami.close()
        await asyncio.wait_for(srv.finished.wait(), 5.0)
        await srv.stop()
        out["events"] = [e.name for e in events]
        return srv, out

    srv, out = asyncio.run(main())
    assert srv.received == [s.sent for i, s in enumerate(view.steps) if i not in skip]
    assert out["banner"] == "11.0.0"
    assert out["ping"]["Ping"] == "Pong" and out["ping"].action_id == "ami-login-5"
    assert out["settings"]["AsteriskVersion"] == "22.10.1"
    assert out["settings"]["systemname"] == ""  # case-insensitive keys, empty value kept
    assert out["status"]["CoreCurrentCalls"] == "0"
    assert out["unknown"].startswith("Invalid/unknown command: NoSuchAction.")
    assert out["global"] == ""
    assert out["nochan"] == "No such channel" and out["hangup"] == "No such channel"
    assert out["channels"] == []
    assert out["events"] == ["FullyBooted", "SuccessfulAuth", "RequestBadFormat"]


def test_ami_replay_login_failed() -> None:
    view = tx.ami_view(tx.load("ami-login-failed.txt").session)
    skip = _skip_without_action_id(view)
    assert [view.steps[i].notes[-1] for i in skip] == ["Ping before authenticating"]

    async def main() -> tuple[AMIReplayServer, AMIClient, str]:
        srv = AMIReplayServer(view, skip)
        port = await srv.start()
        kept = [s for i, s in enumerate(view.steps) if i not in skip]
        ami = AMIClient("127.0.0.1", port, "ctl", "wrongsecret", events=None, ping_interval=None,
                        action_id_factory=_ids(kept))
        with pytest.raises(AMIAuthError) as exc:
            await ami.connect()
        await asyncio.wait_for(srv.finished.wait(), 5.0)
        await srv.stop()
        return srv, ami, exc.value.message

    srv, ami, message = asyncio.run(main())
    assert srv.received == [view.steps[1].sent]
    assert message == "Authentication failed"
    assert not ami.connected and ami.attempts == 1  # no retry loop after a refused first login


def test_ami_replay_originate_hangup() -> None:
    view = tx.ami_view(tx.load("ami-originate-hangup.txt").session)
    chan = "Local/102@facility-phones-00000007;2"

    async def main() -> tuple[AMIReplayServer, dict[str, Any]]:
        srv = AMIReplayServer(view, set())
        port = await srv.start()
        ami = AMIClient("127.0.0.1", port, "ctl", "ctlsecret", events=True, ping_interval=None,
                        action_id_factory=_ids(view.steps))
        hangups: list[Message] = []
        ami.on_event("Hangup", hangups.append)
        out: dict[str, Any] = {}
        await ami.connect()
        out["orig"] = await ami.originate(
            "Local/102@facility-phones", context="handset-sim", exten="talk", priority=1,
            caller_id='"Inmate 0102" <102>', variables={"ORIG_VAR": "from-originate"},
            channel_id="ctl-call-0102")
        out["channels"] = await ami.core_show_channels()
        names = ("INMATE_ID", "ORIG_VAR", "NOT_SET_ANYWHERE", "CHANNEL(state)", "CDR(duration)")
        out["vars"] = [await ami.getvar(v, chan) for v in names]
        await ami.setvar("CONTROLLER_FLAG", "hold-42", chan)
        out["flag"] = await ami.getvar("CONTROLLER_FLAG", chan)
        await ami.setvar("GLOBAL_FLAG", "g1")
        out["global"] = await ami.getvar("GLOBAL_FLAG")
        out["status"] = await ami.status(chan)
        out["hangup"] = await ami.hangup(chan, cause=16)
        with pytest.raises(AMIError) as e1:
            await ami.getvar("INMATE_ID", chan)
        out["dead"] = e1.value.message
        out["failed"] = await ami.originate("Local/999@facility-phones", context="handset-sim", exten="talk",
                                            priority=1)
        with pytest.raises(AMIError) as e2:
            await ami.originate("Local/102@no-such-context", context="handset-sim", exten="talk", priority=1,
                                async_=False)
        out["sync"] = e2.value.message
        await ami.close()
        await asyncio.wait_for(srv.finished.wait(), 5.0)
        await srv.stop()
        out["hangups"] = hangups
        return srv, out

    srv, out = asyncio.run(main())
    assert srv.received == [s.sent for s in view.steps]  # byte-exact, Variable/ChannelId included
    orig = out["orig"]
    assert orig.name == "OriginateResponse" and orig["Response"] == "Success"
    assert orig["Uniqueid"] == "ctl-call-0102" and orig["Reason"] == "4"
    assert [c["Channel"] for c in out["channels"]] == [chan, "Local/102@facility-phones-00000007;1"]
    assert out["channels"][1]["ApplicationData"] == '#,#["#{SEND_DIGITS}" != ""],600,0.1'
    assert out["vars"] == ["INM-0102", "from-originate", "", "Up", "2"]
    assert out["flag"] == "hold-42" and out["global"] == "g1"
    [status] = out["status"]
    assert status["Seconds"] == "2" and status["Application"] == "AGI"
    assert out["hangup"]["Message"] == "Channel Hungup"
    assert out["dead"] == "No such channel"
    assert out["failed"]["Response"] == "Failure" and out["failed"]["Reason"] == "0"
    assert out["sync"] == "Originate failed"
    assert chan in [h["Channel"] for h in out["hangups"]]


@pytest.mark.parametrize("path", tx.ami_files(), ids=lambda p: p.name)
def test_ami_transcripts_parse(path: Any) -> None:
    """Every Asterisk message in every AMI transcript frames and parses; repeated keys keep order."""
    for session in tx.load(path).sessions:
        view = tx.ami_view(session)
        assert view.banner == b"Asterisk Call Manager/11.0.0\r\n"
        for blob in [*view.before, *(r for s in view.steps for r in s.replies)]:
            [msg] = parse_messages(blob)
            assert msg.is_event or msg.is_response
            assert msg.to_bytes() == blob  # lossless: order, case and empty values survive
