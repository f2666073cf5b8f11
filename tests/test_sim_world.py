"""Scenarios of the simulated world, driven by a minimal scripted controller stand-in over real TCP.

The stand-in is a raw asyncio FastAGI server that sends fixed command lines per script name; it knows
nothing of the real controller. Time is virtual (ManualClock.autorun) so simulated durations are exact,
except in the time-scale test, which runs a scaled real-time Clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callcontrol.platform.clock import Clock, ManualClock
from callcontrol.sim import CallResult, Handset, HangUp, Keys, Recipient, SimConfig, Simulator
from callcontrol.sim.wire import ami_message, parse_ami_message

NUMBER = "+13128681234"
TARGET = "Local/13128681234@apc-outbound"


class Session:
    """One FastAGI connection as the controller sees it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, env: dict[str, str]
    ) -> None:
        self.reader, self.writer, self.env = reader, writer, env
        self.replies: list[str] = []
        self.hangups = 0

    async def line(self) -> str:
        data = await asyncio.wait_for(self.reader.readline(), 10)
        return data.decode()

    async def cmd(self, command: str) -> str:
        """Send a command, return its reply (a HANGUP line arriving first is counted, not returned)."""
        self.writer.write(command.encode() + b"\n")
        while True:
            reply = await self.line()
            if reply == "HANGUP\n":
                self.hangups += 1
                continue
            self.replies.append(reply)
            return reply

    async def expect_hangup(self) -> None:
        assert await self.line() == "HANGUP\n"
        self.hangups += 1

    async def finish(self) -> None:
        """Half-close like the captured controller, read what is left (HANGUP, then EOF), close."""
        self.writer.write_eof()
        rest = await asyncio.wait_for(self.reader.read(), 10)
        self.hangups += rest.count(b"HANGUP\n")
        self.writer.close()


Script = Callable[[Session], Awaitable[None]]


class StandIn:
    """A FastAGI server that runs `routes[script](session)` for each connection."""

    def __init__(self, routes: dict[str, Script]) -> None:
        self.routes = routes
        self.sessions: list[Session] = []
        self.errors: list[BaseException] = []
        self.port = 0

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return ("127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        env: dict[str, str] = {}
        while True:
            raw = (await reader.readline()).decode()
            if raw in ("\n", ""):
                break
            key, _, value = raw.rstrip("\n").partition(": ")
            env[key] = value
        session = Session(reader, writer, env)
        self.sessions.append(session)
        try:
            await self.routes[env["agi_network_script"].split("?")[0]](session)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
            writer.close()

    def by_script(self, name: str) -> list[Session]:
        return [s for s in self.sessions if s.env["agi_network_script"].split("?")[0] == name]

    async def stop(self) -> None:
        self._server.close()


def run(
    routes: dict[str, Script],
    scenario: Callable[[Simulator, StandIn], Awaitable[Any]],
    config: SimConfig | None = None,
    clock: Clock | None = None,
    ami: bool = False,
) -> Any:
    async def main() -> Any:
        manual = clock is None
        clk = clock or ManualClock(start=1_800_000_000.0)
        driver = asyncio.ensure_future(clk.autorun()) if manual and isinstance(clk, ManualClock) else None
        standin = StandIn(routes)
        addr = await standin.start()
        try:
            async with Simulator(
                addr, clock=clk, config=config or SimConfig(seed=7), ami_port=0 if ami else None
            ) as sim:
                out = await asyncio.wait_for(scenario(sim, standin), 30)
        finally:
            if driver is not None:
                driver.cancel()
            await standin.stop()
        assert not standin.errors, standin.errors
        return out

    return asyncio.run(main())


def caller_dialing(options: str, after: list[str] | None = None, timeout: int = 30) -> Script:
    async def script(s: Session) -> None:
        assert await s.cmd("ANSWER") == "200 result=0\n"
        await s.cmd("SET VARIABLE CALL_ID call-42")
        await s.cmd(f"EXEC Dial {TARGET},{timeout},{options}")
        for c in after or [
            "GET VARIABLE DIALSTATUS",
            "GET VARIABLE ANSWEREDTIME",
            "GET VARIABLE GOSUB_RETVAL",
            "GET VARIABLE HANGUPCAUSE",
            "CHANNEL STATUS",
        ]:
            await s.cmd(c)
        await s.finish()

    return script


def screener(accept_key: str = "1") -> Script:
    async def script(s: Session) -> None:
        assert await s.cmd("CHANNEL STATUS") == "200 result=6\n"
        reply = await s.cmd('STREAM FILE vm-intro "129"')
        if reply.startswith(f"200 result={ord(accept_key)} "):
            await s.cmd("SET VARIABLE SCREEN_RESULT ACCEPTED")
        else:
            await s.cmd("SET VARIABLE SCREEN_RESULT REJECTED")
            await s.cmd("SET VARIABLE GOSUB_RESULT BUSY")
        await s.finish()

    return script


def call(sim: Simulator, recipient: Recipient | None = None, **kw: Any) -> Awaitable[CallResult]:
    return sim.place_call("FAC-07", "A-1", extension="0701", recipient=recipient, **kw)


# ------------------------------------------------------------------------------------------ scenarios


def test_accepted_call_bridges_for_talk_time_and_reports_everything() -> None:
    async def scenario(sim: Simulator, standin: StandIn) -> tuple[CallResult, StandIn]:
        return await call(sim, Recipient(NUMBER, ring=3, keys="1", key_delay=1.5, talk=30)), standin

    result, standin = run(
        {"inmate-call": caller_dialing("U(screen-sub^call-42^FAC-07)"), "screen": screener()}, scenario
    )
    caller = standin.by_script("inmate-call")[0]
    screen = standin.by_script("screen")[0]
    assert caller.env["agi_request"].endswith("/inmate-call?facility=FAC-07")
    assert caller.env["agi_channel"] == "Local/0701@facility-phones-00000000;2"
    assert (caller.env["agi_arg_1"], caller.env["agi_arg_2"]) == ("0701", "A-1")
    assert screen.env["agi_channel"] == "Local/13128681234@apc-outbound-00000001;1"
    assert (screen.env["agi_context"], screen.env["agi_extension"], screen.env["agi_priority"]) == (
        "screen-sub",
        "s",
        "2",
    )
    assert (screen.env["agi_arg_1"], screen.env["agi_arg_2"]) == ("call-42", "FAC-07")
    assert screen.replies[1] == "200 result=49 endpos=12160\n"  # pressed 1.5 s into vm-intro
    assert caller.replies[2] == "200 result=-1\n"  # callee ended the bridge
    assert caller.replies[3:] == [
        "200 result=1 (ANSWER)\n",
        "200 result=1 (35)\n",
        "200 result=0\n",
        "200 result=1 (16)\n",
        "200 result=6\n",
    ]
    (dial,) = result.dials
    assert dial.status == "ANSWER" and dial.ended_by == "recipient"
    assert dial.bridge_start is not None and dial.bridge_end is not None
    assert abs(dial.bridge_end - dial.bridge_start - 30) < 1e-6
    assert dial.answered_at is not None and abs(dial.answered_at - dial.started - 3) < 1e-6
    assert dial.recipient_keys == ["1"] and dial.recipient_prompts == ["vm-intro"]
    assert dial.screen is not None and dial.screen.status == "SUCCESS"
    assert result.variables["CALL_ID"] == "call-42"
    assert result.hangup_by == "dialplan" and result.agi is not None and result.agi.status == "SUCCESS"


def test_refused_call_gosub_busy() -> None:
    async def scenario(sim: Simulator, standin: StandIn) -> tuple[CallResult, StandIn]:
        return await call(sim, Recipient(NUMBER, keys="2")), standin

    result, standin = run({"inmate-call": caller_dialing("U(screen-sub^x)"), "screen": screener()}, scenario)
    caller = standin.by_script("inmate-call")[0]
    assert caller.replies[2] == "200 result=0\n"
    assert caller.replies[3:6] == ["200 result=1 (BUSY)\n", "200 result=1 ()\n", "200 result=1 (REJECTED)\n"]
    assert result.dials[0].status == "BUSY" and result.dials[0].gosub_result == "BUSY"
    assert result.dials[0].bridge_start is None


def test_no_answer_busy_and_unavailable() -> None:
    async def scenario(sim: Simulator, standin: StandIn) -> list[CallResult]:
        return [
            await call(sim, Recipient(NUMBER, answer=False)),
            await call(sim, Recipient(NUMBER, busy=True, ring=1)),
            await call(sim, Recipient(NUMBER, unavailable=True)),
        ]

    after = ["GET VARIABLE DIALSTATUS", "GET VARIABLE HANGUPCAUSE"]
    results = run({"inmate-call": caller_dialing("", after, timeout=5)}, scenario)
    assert [r.dials[0].status for r in results] == ["NOANSWER", "BUSY", "CHANUNAVAIL"]
    noanswer, busy, _ = (r.dials[0] for r in results)
    assert noanswer.ended is not None and abs(noanswer.ended - noanswer.started - 5) < 1e-6
    assert busy.ended is not None and abs(busy.ended - busy.started - 1) < 1e-6
    assert results[1].variables["DIALSTATUS"] == "BUSY"


def test_limit_warns_then_ends_the_bridge_and_hangs_up_the_caller() -> None:
    async def caller(s: Session) -> None:
        await s.cmd("ANSWER")
        await s.cmd("SET VARIABLE LIMIT_WARNING_FILE advancepay/one-minute-left")
        assert await s.cmd(f"EXEC Dial {TARGET},30,U(screen-sub)L(120000:60000)") == "200 result=-1\n"
        await s.expect_hangup()
        assert await s.cmd("GET VARIABLE DIALSTATUS") == "200 result=1 (ANSWER)\n"
        assert (
            await s.cmd('STREAM FILE beep ""')
            == "511 Command Not Permitted on a dead channel or intercept routine\n"
        )
        s.writer.close()

    async def scenario(sim: Simulator, standin: StandIn) -> CallResult:
        return await call(sim, Recipient(NUMBER, keys="1", talk=None))

    result = run({"inmate-call": caller, "screen": screener()}, scenario)
    (dial,) = result.dials
    assert dial.limit_hit and dial.ended_by == "limit"
    assert dial.bridge_start is not None and dial.warning_at is not None and dial.bridge_end is not None
    assert abs(dial.warning_at - dial.bridge_start - 60) < 1e-6
    assert abs(dial.bridge_end - dial.bridge_start - 120) < 1e-6
    assert dial.warning_files == ["advancepay/one-minute-left"]
    assert result.hangup_by == "limit"


def test_handset_hangs_up_mid_bridge() -> None:
    async def caller(s: Session) -> None:
        await s.cmd("ANSWER")
        assert await s.cmd(f"EXEC Dial {TARGET},30,U(screen-sub)") == "200 result=-1\n"
        await s.expect_hangup()
        s.writer.close()

    async def scenario(sim: Simulator, standin: StandIn) -> CallResult:
        return await call(
            sim, Recipient(NUMBER, keys="1", talk=None), handset=Handset(hangup_during_bridge=12)
        )

    result = run({"inmate-call": caller, "screen": screener()}, scenario)
    (dial,) = result.dials
    assert dial.ended_by == "caller" and result.hangup_by == "handset"
    assert dial.bridge_end is not None and dial.bridge_start is not None
    assert abs(dial.bridge_end - dial.bridge_start - 12) < 1e-6


def test_handset_script_feeds_get_data_wait_for_digit_and_record() -> None:
    async def caller(s: Session) -> None:
        await s.cmd("ANSWER")
        await s.cmd('STREAM FILE vm-intro "12"')  # Interrupt "5" is not for this prompt
        await s.cmd('STREAM FILE vm-intro "567"')
        await s.cmd("GET DATA beep 3000 4")
        await s.cmd("GET DATA beep 3000 10")
        await s.cmd("WAIT FOR DIGIT 2000")
        await s.cmd('RECORD FILE /tmp/name wav "#" 10000 BEEP')
        await s.cmd("EXEC NoSuchApp x")
        await s.cmd("EXEC MixMonitor /var/spool/x.wav,b")
        await s.cmd("WAIT FOR DIGIT 5000")
        await s.expect_hangup()
        s.writer.close()

    async def scenario(sim: Simulator, standin: StandIn) -> tuple[CallResult, StandIn]:
        hs = Handset([Keys("5", after=1.0), Keys("4455"), Keys("12#"), None, Keys("#", after=2), HangUp(0.5)])
        return await call(sim, handset=hs), standin

    result, standin = run({"inmate-call": caller}, scenario)
    assert standin.sessions[0].replies == [
        "200 result=0\n",
        "200 result=0 endpos=45280\n",
        "200 result=53 endpos=8160\n",
        "200 result=4455\n",
        "200 result=12\n",
        "200 result=0\n",
        "200 result=35 (dtmf) endpos=0\n",
        "200 result=-2\n",
        "200 result=0\n",
        "200 result=-1\n",
    ]
    assert standin.sessions[0].hangups == 1
    assert result.keys == ["5", "4", "4", "5", "5", "1", "2", "#", "#"]
    assert result.prompts[:3] == ["vm-intro", "vm-intro", "beep"]
    assert result.recorded and result.recordings == ["/tmp/name.wav"] and result.hangup_by == "handset"


def test_unknown_prompt_fails_when_prompts_are_known() -> None:
    async def caller(s: Session) -> None:
        assert await s.cmd('STREAM FILE advancepay/nope ""') == "200 result=-1 endpos=0\n"
        assert await s.cmd('STREAM FILE advancepay/welcome ""') == "200 result=0 endpos=16000\n"
        s.writer.close()

    cfg = SimConfig(prompts={"advancepay/welcome": 2.0}, known_prompts={"advancepay/welcome"})
    run({"inmate-call": caller}, lambda sim, _: call(sim), config=cfg)


def test_ami_hangup_during_command_and_while_idle() -> None:
    """-1 then HANGUP when a command runs; HANGUP alone when the controller is idle."""
    seen: dict[str, list[str]] = {}

    async def busy(s: Session) -> None:
        await s.cmd("ANSWER")
        seen["busy"] = [await s.cmd("WAIT FOR DIGIT -1")]
        seen["busy"].append(await s.line())
        s.writer.close()

    async def idle(s: Session) -> None:
        await s.cmd("ANSWER")
        seen["idle"] = [await s.line()]
        s.writer.close()

    async def ami_hangup(sim: Simulator, channel: str) -> list[tuple[str, str]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami.port)
        await reader.readline()
        writer.write(
            ami_message(
                [("Action", "Login"), ("Username", "ctl"), ("Secret", "ctlsecret"), ("Events", "off")]
            )
        )
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ami_message([("Action", "Hangup"), ("ActionID", "h1"), ("Channel", channel)]))
        reply = parse_ami_message(await reader.readuntil(b"\r\n\r\n"))
        writer.close()
        return reply

    async def scenario(sim: Simulator, standin: StandIn) -> list[tuple[str, str]]:
        replies = []
        for script in ("busy", "idle"):
            task = sim.start_call("FAC-07", "A-1", script=script)
            while not standin.by_script(script) or not standin.by_script(script)[0].replies:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.02)
            name = standin.by_script(script)[0].env["agi_channel"]
            replies.append(await ami_hangup(sim, name))
            result = await task
            assert result.hangup_by == "ami"
        return replies

    replies = run({"busy": busy, "idle": idle}, scenario, ami=True)
    assert seen == {"busy": ["200 result=-1\n", "HANGUP\n"], "idle": ["HANGUP\n"]}
    assert replies[0] == [("Response", "Success"), ("ActionID", "h1"), ("Message", "Channel Hungup")]


def test_hangup_handler_reaches_another_controller_with_call_id() -> None:
    """The first controller dies mid-call; the hang-up handler AGI goes to the new address."""
    second_sessions: list[Session] = []
    switched = asyncio.Event()

    async def caller(s: Session) -> None:
        await s.cmd("ANSWER")
        await s.cmd("SET VARIABLE CALL_ID call-77")
        await s.cmd("SET VARIABLE CHANNEL(hangup_handler_push) apc-hangup,s,1")
        await switched.wait()
        s.writer.close()  # controller dies

    async def hangup_handler(s: Session) -> None:
        second_sessions.append(s)
        await s.cmd("GET VARIABLE CALL_ID")
        await s.cmd('STREAM FILE beep ""')
        await s.cmd("GET VARIABLE HANGUPCAUSE")
        s.writer.close()

    async def scenario(sim: Simulator, standin: StandIn) -> CallResult:
        other = StandIn({"hangup": hangup_handler})
        other_addr = await other.start()
        task = sim.start_call("FAC-07", "A-1")
        while not standin.sessions or not standin.sessions[0].replies[2:]:
            await asyncio.sleep(0.005)
        sim.controller = other_addr
        switched.set()
        result = await task
        await other.stop()
        assert not other.errors
        return result

    result = run({"inmate-call": caller}, scenario)
    (handler,) = second_sessions
    assert handler.env["agi_context"] == "apc-hangup" and handler.env["agi_extension"] == "s"
    assert handler.env["agi_channel"] == result.channel
    assert handler.replies == [
        "200 result=1 (call-77)\n",
        "511 Command Not Permitted on a dead channel or intercept routine\n",
        "200 result=1 (16)\n",
    ]
    assert len(result.hangup_agi) == 1 and result.hangup_agi[0].script == "hangup"


def test_configured_hangup_agi_runs_for_every_call() -> None:
    handler_ids: list[str] = []

    async def caller(s: Session) -> None:
        await s.cmd(f"SET VARIABLE CALL_ID {s.env['agi_uniqueid']}")
        await s.cmd("HANGUP")
        await s.finish()

    async def hangup_handler(s: Session) -> None:
        handler_ids.append((await s.cmd("GET VARIABLE CALL_ID"))[14:-2])
        s.writer.close()

    async def scenario(sim: Simulator, standin: StandIn) -> list[CallResult]:
        return list(await asyncio.gather(*(call(sim) for _ in range(3))))

    results = run(
        {"inmate-call": caller, "hangup": hangup_handler}, scenario, config=SimConfig(hangup_agi="hangup")
    )
    assert sorted(handler_ids) == sorted(r.uniqueid for r in results)
    assert all(r.hangup_by == "controller" for r in results)


def test_time_scale_runs_a_long_call_fast_in_simulated_seconds() -> None:
    clock = Clock(scale=0.002)

    async def scenario(sim: Simulator, standin: StandIn) -> tuple[CallResult, float]:
        t0 = time.monotonic()
        result = await call(sim, Recipient(NUMBER, ring=5, keys="1", talk=300))
        return result, time.monotonic() - t0

    result, real = run(
        {"inmate-call": caller_dialing("U(screen-sub)"), "screen": screener()}, scenario, clock=clock
    )
    (dial,) = result.dials
    assert dial.bridge_end is not None and dial.bridge_start is not None
    assert 299 < dial.bridge_end - dial.bridge_start < 305  # simulated seconds
    assert real < 3  # ~0.6 s of real time at scale 0.002


def test_many_concurrent_calls() -> None:
    n = 150

    async def scenario(sim: Simulator, standin: StandIn) -> list[CallResult]:
        return list(
            await asyncio.gather(
                *(
                    sim.place_call(
                        "FAC-07",
                        f"S-{i}",
                        extension=f"{1000 + i}",
                        recipient=Recipient(f"+1312555{i:04d}", keys="1", talk=60 + i),
                    )
                    for i in range(n)
                )
            )
        )

    async def caller(s: Session) -> None:
        i = int(s.env["agi_arg_2"][2:])
        await s.cmd("ANSWER")
        await s.cmd(f"EXEC Dial Local/1312555{i:04d}@apc-outbound,30,U(screen-sub)")
        await s.cmd("GET VARIABLE DIALSTATUS")
        await s.finish()

    results = run({"inmate-call": caller, "screen": screener()}, scenario)
    assert len({r.channel for r in results}) == n
    assert all(r.dials[0].status == "ANSWER" and r.dials[0].ended_by == "recipient" for r in results)
    for i, r in enumerate(results):
        d = r.dials[0]
        assert d.bridge_end is not None and d.bridge_start is not None
        assert abs(d.bridge_end - d.bridge_start - (60 + i)) < 1e-6


def test_read_and_playback_lists() -> None:
    """Read(): any key interrupts the prompts (50 ms waited between files), '#' ends input, silence times
    out, a hang-up gives 0 with READSTATUS=HANGUP (as the real one);
    Playback(a&b) plays both. Timings are exact (virtual clock)."""
    times: list[float] = []
    world: list[Simulator] = []

    async def caller(s: Session) -> None:
        async def timed(command: str) -> str:
            t0 = world[0].clock.monotonic()
            reply = await s.cmd(command)
            times.append(round(world[0].clock.monotonic() - t0, 3))
            return reply

        assert await timed("EXEC Playback a&b") == "200 result=0\n"
        assert await timed("EXEC Read K,a&b&c,1,,1,5") == "200 result=0\n"   # '7' 1 s in
        assert await s.cmd('GET FULL VARIABLE "${READSTATUS}|${K}"') == "200 result=1 (OK|7)\n"
        assert await timed("EXEC Read K,a&b,1,,1,5") == "200 result=0\n"     # silence
        assert await s.cmd('GET FULL VARIABLE "${READSTATUS}|${K}"') == "200 result=1 (TIMEOUT|)\n"
        assert await timed("EXEC Read K,a,4,,1,3") == "200 result=0\n"       # '#' first
        assert await s.cmd('GET FULL VARIABLE "${READSTATUS}|${K}"') == "200 result=1 (OK|)\n"
        assert await timed("EXEC Read K,a,4,,1,3") == "200 result=0\n"       # 12 then timeout
        assert await s.cmd('GET FULL VARIABLE "${READSTATUS}|${K}"') == "200 result=1 (TIMEOUT|12)\n"
        assert await s.cmd("EXEC Read K,a&b,1,,1,5") == "200 result=0\n"     # hangs up 1 s in (0, as real)
        await s.expect_hangup()
        assert await s.cmd("GET VARIABLE READSTATUS") == "200 result=1 (HANGUP)\n"
        s.writer.close()

    async def scenario(sim: Simulator, standin: StandIn) -> CallResult:
        world.append(sim)
        hs = Handset(["7", None, Keys("#", after=0.5), Keys("12", after=0.5, gap=1.0), HangUp(1.0)])
        return await call(sim, handset=hs)

    cfg = SimConfig(default_prompt_seconds=2.0)
    result = run({"inmate-call": caller}, scenario, config=cfg)
    # Playback 4 s; Read: '7' 0.5 s in (a key action's default delay); silence: 2+0.05+2 s of prompts
    # then 5 s; '#': 0.5 s; "12": keys at 0.5 and 1.5 s, then 3 s of silence.
    assert times == [4.0, 0.5, 9.05, 0.5, 4.5]
    assert result.prompts[:6] == ["a", "b", "a", "b", "c", "a"]
    assert result.keys == ["7", "#", "1", "2"]
