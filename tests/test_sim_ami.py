"""The simulator's AMI server during simulated calls: events, live-channel actions, reconnect switches."""

from __future__ import annotations

import asyncio

from callcontrol.sim import Recipient, SimConfig, Simulator
from callcontrol.sim.wire import ami_message, header, parse_ami_message
from tests.test_sim_world import NUMBER, Session, StandIn, run, screener


class Ami:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, sim: Simulator, events: str = "on", secret: str = "ctlsecret") -> tuple[Ami, list]:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami.port)
        assert await reader.readline() == b"Asterisk Call Manager/11.0.0\r\n"
        ami = cls(reader, writer)
        reply = await ami.action("Login", Username="ctl", Secret=secret, Events=events)
        return ami, reply

    async def message(self) -> list[tuple[str, str]]:
        return parse_ami_message(await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10))

    async def action(self, name: str, **fields: str) -> list[tuple[str, str]]:
        self.writer.write(ami_message([("Action", name), ("ActionID", f"t-{name}"), *fields.items()]))
        while True:
            msg = await self.message()
            if header(msg, "Response") is not None:
                return msg

    async def events_until(self, name: str, channel_suffix: str = "") -> list[list[tuple[str, str]]]:
        seen = []
        while True:
            msg = await self.message()
            seen.append(msg)
            if header(msg, "Event") == name and (header(msg, "Channel") or "").endswith(channel_suffix):
                return seen


def test_call_events_list_channels_getvar_setvar_and_hangup_event() -> None:
    hold = asyncio.Event()

    async def caller(s: Session) -> None:
        await s.cmd("ANSWER")
        await s.cmd("SET VARIABLE CALL_ID call-9")
        assert await s.cmd("EXEC Dial Local/13128681234@apc-outbound,30,U(screen-sub)") == "200 result=-1\n"
        await hold.wait()
        assert await s.cmd("GET VARIABLE FROM_AMI") == "200 result=1 (yes)\n"
        await s.finish()

    async def scenario(sim: Simulator, standin: StandIn) -> dict:
        ami, login = await Ami.connect(sim)
        assert header(login, "Message") == "Authentication accepted"
        task = sim.start_call(
            "FAC-07", "A-1", extension="0701", recipient=Recipient(NUMBER, keys="1", talk=20)
        )
        events = await ami.events_until("BridgeLeave", ";2")
        name = "Local/0701@facility-phones-00000000;2"
        listing = []
        reply = await ami.action("CoreShowChannels")
        assert header(reply, "EventList") == "start"
        while True:
            msg = await ami.message()
            listing.append(msg)
            if header(msg, "Event") == "CoreShowChannelsComplete":
                break
        getvar = await ami.action("Getvar", Channel=name, Variable="CALL_ID")
        setvar = await ami.action("Setvar", Channel=name, Variable="FROM_AMI", Value="yes")
        hold.set()
        events += await ami.events_until("Cdr", "facility-phones-00000000;2")
        await task
        missing = await ami.action("Getvar", Channel=name, Variable="CALL_ID")
        return {"events": events, "listing": listing, "getvar": getvar, "setvar": setvar, "missing": missing}

    out = run({"inmate-call": caller, "screen": screener()}, scenario, ami=True)
    names = [
        (header(e, "Event"), header(e, "Channel") or header(e, "DestChannel") or "") for e in out["events"]
    ]
    kinds = [n for n, _ in names]
    for required in (
        "Newchannel",
        "Newexten",
        "AGIExecStart",
        "AGIExecEnd",
        "DialBegin",
        "DialState",
        "DialEnd",
        "BridgeCreate",
        "BridgeEnter",
        "BridgeLeave",
        "Hangup",
        "Cdr",
    ):
        assert required in kinds, required
    assert (
        kinds.index("DialBegin")
        < kinds.index("DialEnd")
        < kinds.index("BridgeEnter")
        < kinds.index("BridgeLeave")
    )
    dial_end = next(
        e
        for e in out["events"]
        if header(e, "Event") == "DialEnd"
        and header(e, "DialStatus")
        and header(e, "DestChannel", "").startswith("Local/13128681234")
    )
    assert header(dial_end, "DialStatus") == "ANSWER"
    assert header(dial_end, "Channel") == "Local/0701@facility-phones-00000000;2"
    hangup = next(
        e
        for e in out["events"]
        if header(e, "Event") == "Hangup" and header(e, "Channel", "").endswith("facility-phones-00000000;2")
    )
    assert (header(hangup, "Cause"), header(hangup, "Cause-txt")) == ("16", "Normal Clearing")
    assert header(hangup, "Uniqueid") == "1800000000.1"
    listed = [header(m, "Channel") for m in out["listing"] if header(m, "Event") == "CoreShowChannel"]
    assert "Local/0701@facility-phones-00000000;2" in listed
    assert header(out["listing"][-1], "ListItems") == str(len(listed))
    assert header(out["getvar"], "Value") == "call-9"
    assert header(out["setvar"], "Message") == "Variable Set"
    assert header(out["missing"], "Message") == "No such channel"


def test_refused_logins_and_dropped_connections() -> None:
    async def scenario(sim: Simulator, standin: StandIn) -> None:
        sim.ami.refuse_logins = True
        ami, reply = await Ami.connect(sim)
        assert header(reply, "Message") == "Authentication failed"
        assert await ami.reader.read() == b""  # closed after the refusal
        sim.ami.refuse_logins = False
        _, bad = await Ami.connect(sim, secret="wrong")
        assert header(bad, "Message") == "Authentication failed"
        ami, ok = await Ami.connect(sim)
        assert header(ok, "Response") == "Success"
        sim.ami.drop_all()
        rest = await asyncio.wait_for(ami.reader.read(), 5)  # returns: EOF after the login events
        assert rest.startswith(b"Event: FullyBooted\r\n") and rest.endswith(b"\r\n\r\n")
        assert ami.reader.at_eof()
        sim.ami.accepting = False
        reader, _ = await asyncio.open_connection("127.0.0.1", sim.ami.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        sim.ami.accepting = True
        ami, ok = await Ami.connect(sim, events="off")
        pong = await ami.action("Ping")
        assert header(pong, "Ping") == "Pong"

    run({}, scenario, ami=True)


def test_permission_denied_before_login_and_originate_runs_the_dialplan() -> None:
    async def hold(s: Session) -> None:
        await s.cmd("ANSWER")
        assert await s.cmd("GET VARIABLE INMATE_ID") == "200 result=1 (INM-0102)\n"
        await s.finish()

    async def scenario(sim: Simulator, standin: StandIn) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami.port)
        await reader.readline()
        writer.write(ami_message([("Action", "Ping")]))
        denied = parse_ami_message(await reader.readuntil(b"\r\n\r\n"))
        assert denied == [("Response", "Error"), ("Message", "Permission denied")]
        writer.close()
        ami, _ = await Ami.connect(sim)
        reply = await ami.action(
            "Originate",
            Channel="Local/102@facility-phones",
            Context="handset-sim",
            Exten="talk",
            Priority="1",
            CallerID='"Inmate 0102" <102>',
            Async="true",
        )
        assert header(reply, "Message") == "Originate successfully queued"
        response = None
        while response is None:
            msg = await ami.message()
            if header(msg, "Event") == "OriginateResponse":
                response = msg
        assert header(response, "Response") == "Success" and header(response, "Reason") == "4"
        await ami.events_until("Hangup", ";1")
        assert standin.by_script("hold")[0].env["agi_channel"] == "Local/102@facility-phones-00000000;2"

    from callcontrol.sim.dialplan import transcript_dialplan

    run(
        {"hold": hold},
        scenario,
        config=SimConfig(dialplan=transcript_dialplan(), handset_context=("handset-sim", "talk")),
        ami=True,
    )
