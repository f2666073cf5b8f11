"""The tests' hands on a real Asterisk: place inmate calls and play the handset and the recipient over AMI.

A call is an AMI Originate of `Local/<station>@facility-phones` whose ;1 half runs the test-only
`[handset]` context. Every channel of that call shares its Linkedid (the ChannelId we give the
Originate), so AMI events are routed to the call by it. Keys are pressed only when the controller's AGI
has started a command that waits for them (AMI `AGIExecStart`): the next scripted answer of the party
whose channel runs that command is put into SEND_DIGITS on that party's channel, and its dialplan sends it
with SendDTMF. An answer may also be HANG_UP (that party hangs up now) or SILENCE (press nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from callcontrol.asterisk.ami import AMIClient, AMIError, Message

HANG_UP = "<hang up>"
SILENCE = "<silence>"
CALLER_HANGS_UP = "<caller hangs up>"     # in a recipient's script: the inmate hangs up at that point
WHEN = "@"          # an answer ("@WAIT FOR DIGIT", "1") is kept until a command containing that text

_ids = itertools.count(1)


def waits_for_keys(command: str) -> bool:
    """Does this AGI command (as AGIExecStart shows it) wait for the party to press keys?"""
    up = command.upper()
    if up.startswith(("GET DATA", "WAIT FOR DIGIT", "RECORD FILE", "EXEC READ ")):
        return True
    if up.startswith("STREAM FILE"):
        escape = command.split(" ", 3)[3:] if command.count(" ") >= 3 else []
        return bool(escape and escape[0].strip().strip('"'))
    return False


@dataclass
class Party:
    """One side's script: answers popped, in order, by each command that waits for this party's keys."""

    answers: list[str | tuple[str | float, ...]]   # a tuple: steps in order, a float sleeps that long
    talk: float | None = None               # after the bridge: hang up after this many seconds
    hang_up_on: str = ""                    # hang up when this party's AGI starts a command like this
    hang_up_delay: float = 0.0
    channel: str = ""                       # the channel whose keys reach the AGI (set from events)
    agi_channel: str = ""
    heard: list[str] = field(default_factory=list)   # AGI commands run on this party's AGI channel

    def next_answer(self) -> str | tuple[str | float, ...]:
        return self.answers.pop(0) if self.answers else SILENCE


@dataclass
class Call:
    id: str
    station: str
    handset: Party
    recipient: Party
    started: float = field(default_factory=time.monotonic)
    bridged_at: float | None = None
    unbridged_at: float | None = None
    channels: dict[str, str] = field(default_factory=dict)      # uniqueid -> name
    hung_up: set[str] = field(default_factory=set)
    hangup_at: dict[str, float] = field(default_factory=dict)   # channel name -> monotonic time
    done: asyncio.Event = field(default_factory=asyncio.Event)
    dial_status: str = ""
    events: list[Message] = field(default_factory=list)
    alert: bool = False      # an alert call the controller side originates: no handset, only the recipient

    @property
    def talk(self) -> float:
        """Seconds the inmate spent bridged (0 when never bridged)."""
        if self.bridged_at is None:
            return 0.0
        return (self.unbridged_at or time.monotonic()) - self.bridged_at

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started


class Switch:
    """Drives calls on one Asterisk through the harness's AMI user."""

    def __init__(self, host: str, port: int, user: str, secret: str) -> None:
        self.ami = AMIClient(host, port, user, secret, events=True, ping_interval=None)
        self.calls: dict[str, Call] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.on_command: list[Callable[[Call, Message], None]] = []

    async def __aenter__(self) -> Switch:
        await self.ami.connect()
        self.ami.on_event("*", self._event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.ami.close()

    # --- placing calls -------------------------------------------------------------------------------
    async def call(self, station: str, handset: Party, recipient: Party | None = None, *,
                   context: str = "facility-phones", wait: float = 240.0) -> Call:
        """Place a call from a station and wait until every one of its channels has hung up."""
        call = await self.place(station, handset, recipient, context=context)
        await asyncio.wait_for(call.done.wait(), wait)
        return call

    async def place(self, station: str, handset: Party, recipient: Party | None = None, *,
                    context: str = "facility-phones") -> Call:
        cid = f"t{next(_ids):03d}-{int(time.time() * 1000) % 10**8}"
        call = Call(cid, station, handset, recipient or Party([]))
        self.calls[cid] = call
        resp = await self.ami.originate(f"Local/{station}@{context}", context="handset", exten="s",
                                        priority=1, channel_id=cid, caller_id=f"Station <{station}>")
        assert resp.get("Response") == "Success", f"originate failed: {dict(resp)}"
        return call

    def expect_alert(self, recipient: Party) -> tuple[str, Call]:
        """Follow an alert call someone else originates (callcontrol/alert_calls.py): returns the ChannelId
        that Originate must carry, and the Call its events will be routed to."""
        cid = f"a{next(_ids):03d}-{int(time.time() * 1000) % 10**8}"
        call = Call(cid, "", Party([]), recipient, alert=True)
        self.calls[cid] = call
        return cid, call

    async def hang_up(self, channel: str) -> None:
        if channel:
            with contextlib.suppress(AMIError):        # gone already
                await self.ami.action("Hangup", Channel=channel, Cause=16)

    async def press(self, channel: str, keys: str) -> None:
        with contextlib.suppress(AMIError):            # the party hung up meanwhile
            await self.ami.setvar("SEND_DIGITS", keys, channel)

    # --- events --------------------------------------------------------------------------------------
    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _event(self, msg: Message) -> None:
        call = self.calls.get(msg.get("Linkedid", ""))
        if call is None:
            return
        call.events.append(msg)
        name = msg.get("Event", "")
        chan, uid = msg.get("Channel", ""), msg.get("Uniqueid", "")
        if name == "Newchannel":
            call.channels[uid] = chan
            if call.alert:
                # Local/<digits>@apc-outbound ;1 runs [apc-alerts] (the alert AGI, then the deposit line's);
                # the [default] ;2 its Dial reached is the person who answers and presses keys.
                if uid == call.id:
                    call.recipient.agi_channel = chan
                elif re.search(r"@default-[0-9a-f]+;2$", chan):
                    call.recipient.channel = chan
            elif uid == call.id:
                call.handset.channel = chan
            elif uid == call.id + ";2":
                call.handset.agi_channel = chan
            elif re.search(r"@default-[0-9a-f]+;2$", chan):
                call.recipient.channel = chan
            elif "@apc-outbound-" in chan and chan.endswith(";1"):
                call.recipient.agi_channel = chan
        elif name == "AGIExecStart":
            self._agi_command(call, chan, msg.get("Command", ""))
            for hook in self.on_command:
                hook(call, msg)
        elif name == "BridgeEnter" and call.bridged_at is None and chan == call.handset.agi_channel:
            call.bridged_at = time.monotonic()
            self._after_bridge(call)
        elif name == "BridgeLeave" and call.unbridged_at is None and chan == call.handset.agi_channel:
            call.unbridged_at = time.monotonic()
        elif name == "DialEnd" and chan == call.handset.agi_channel:
            call.dial_status = msg.get("DialStatus", "")
        elif name == "Hangup":
            call.hung_up.add(uid)
            call.hangup_at.setdefault(chan, time.monotonic())
            if call.channels and set(call.channels) <= call.hung_up:
                call.done.set()

    def _agi_command(self, call: Call, chan: str, command: str) -> None:
        party = call.handset if chan == call.handset.agi_channel else (
            call.recipient if chan == call.recipient.agi_channel else None)
        if party is None:
            return
        party.heard.append(command)
        if party.hang_up_on and command.startswith(party.hang_up_on):
            self._spawn(self._hang_up_after(party.channel, party.hang_up_delay))
        if waits_for_keys(command):
            upcoming = party.answers[0] if party.answers else SILENCE
            if isinstance(upcoming, tuple) and str(upcoming[0]).startswith(WHEN):
                if str(upcoming[0])[len(WHEN):] not in command:
                    return                       # not yet: this answer waits for its command
                upcoming = upcoming[1:]
            answer = party.next_answer()
            answer = upcoming if isinstance(answer, tuple) else answer
            steps = answer if isinstance(answer, tuple) else (answer,)
            self._spawn(self._play(call, party, steps))

    async def _play(self, call: Call, party: Party, steps: tuple[str | float, ...]) -> None:
        for step in steps:
            if isinstance(step, float | int):
                await asyncio.sleep(step)
            elif step == HANG_UP:
                await self.hang_up(party.channel)
            elif step == CALLER_HANGS_UP:
                await self.hang_up(call.handset.channel)
            elif step != SILENCE:
                await self.press(party.channel, step)

    def _after_bridge(self, call: Call) -> None:
        for party in (call.handset, call.recipient):
            if party.talk is not None:
                self._spawn(self._hang_up_after(party.channel, party.talk))

    async def _hang_up_after(self, channel: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.hang_up(channel)
