"""Dial(): ring a scripted recipient, run the U() screening subroutine, bridge, enforce L().

Semantics follow the captures (see tests/data/asterisk-transcripts/README.md): DIALSTATUS=ANSWER is set
when the callee answers, the bridge starts only after U() returns, GOSUB_RESULT on the callee ends the
Dial (BUSY/CONGESTION/CONTINUE/ABORT) and only then GOSUB_RETVAL reaches the caller, the L() timer starts
at the bridge, ANSWEREDTIME counts from the caller's answer and DIALEDTIME from the caller's creation.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callcontrol.sim.dialplan import split_args
from callcontrol.sim.results import DialAttempt

if TYPE_CHECKING:
    from callcontrol.sim.channels import Channel
    from callcontrol.sim.world import Simulator

RESET_VARS = (
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
)


@dataclass
class DialOptions:
    sub: str | None = None
    sub_args: list[str] = field(default_factory=list)
    limit_ms: int | None = None
    warn_ms: int | None = None
    repeat_ms: int | None = None
    g: bool = False
    macro: str | None = None
    raw: str = ""


def parse_options(opts: str) -> DialOptions:
    """Dial's option letters, with U(sub^a^b) and L(limit[:warn[:repeat]]) arguments."""
    out = DialOptions(raw=opts)
    for m in re.finditer(r"([A-Za-z])(?:\(([^)]*)\))?", opts):
        letter, arg = m.group(1), m.group(2)
        if letter == "U" and arg:
            parts = arg.split("^")
            out.sub, out.sub_args = parts[0], parts[1:]
        elif letter == "L" and arg:
            nums = [int(x) if x.strip().isdigit() else None for x in arg.split(":")]
            out.limit_ms = nums[0]
            out.warn_ms = nums[1] if len(nums) > 1 else None
            out.repeat_ms = nums[2] if len(nums) > 2 else None
        elif letter == "g":
            out.g = True
        elif letter == "M":
            out.macro = arg
    return out


def _set(chan: Channel, name: str, value: str) -> None:
    chan.set_var(name, value)


async def dial(sim: Simulator, caller: Channel, data: str) -> int:
    args = split_args(data)
    target = args[0].strip()
    timeout = float(args[1]) if len(args) > 1 and args[1].strip() else None
    opts = parse_options(args[2] if len(args) > 2 else "")
    now = sim.clock.now()
    attempt = DialAttempt(
        target=target, timeout=timeout, options=opts.raw, started=now, limit_ms=opts.limit_ms
    )
    attempt.caller_channel = caller.name
    sim.dials.append(attempt)
    recorder = caller.extra.get("result")
    if recorder is not None:
        recorder.dials.append(attempt)
    if caller.dead:
        attempt.status = "CANCEL"
        return -1
    for name in RESET_VARS:
        _set(caller, name, "")
    tech, _, dest = target.partition("/")
    exten, _, context = dest.partition("@")
    recipient = sim.find_recipient(exten, context)
    callee, far = sim.new_local_pair(exten, context, caller=caller)
    attempt.callee_channel = callee.name
    callee.role = "callee"
    callee.vars["DIALEDPEERNUMBER"] = dest
    callee.extra["attempt"] = attempt
    try:
        if tech != "Local" or recipient is None or recipient.unavailable:
            await asyncio.sleep(0)
            attempt.status = "CHANUNAVAIL"
            attempt.ended = sim.clock.now()
            _set(caller, "DIALSTATUS", "CHANUNAVAIL")
            return 0
        sim.events.emit(
            "DialBegin",
            [("Privilege", "call,all"), *caller.snapshot(), *callee.snapshot("Dest"), ("DialString", dest)],
        )
        callee.set_state(5)
        sim.events.emit(
            "DialState",
            [
                ("Privilege", "call,all"),
                *caller.snapshot(),
                *callee.snapshot("Dest"),
                ("DialStatus", "RINGING"),
            ],
        )
        ring_for = recipient.ring if (recipient.answer or recipient.busy) else None
        if timeout is not None and (ring_for is None or ring_for >= timeout):
            ring_for, outcome = timeout, "NOANSWER"
        else:
            outcome = "BUSY" if recipient.busy else "ANSWER"
        if not await caller.pause(ring_for):
            attempt.status = "CANCEL"
            return _end(sim, caller, callee, attempt, "CANCEL", -1, "caller")
        if outcome != "ANSWER":
            caller.hangupcause = 17 if outcome == "BUSY" else 16
            return _end(
                sim, caller, callee, attempt, outcome, 0, "timeout" if outcome == "NOANSWER" else "recipient"
            )
        # ---- answered
        callee.script = recipient.script()
        callee.answer()
        attempt.answered_at = sim.clock.now()
        _set(caller, "DIALSTATUS", "ANSWER")
        _set(caller, "DIALEDPEERNAME", callee.name)
        _set(caller, "DIALEDPEERNUMBER", dest)
        if recipient.hangup_after_answer is not None:
            sim.schedule_hangup(callee, recipient.hangup_after_answer, "recipient")
        if opts.sub:
            transcript = await sim.run_subroutine(callee, opts.sub, opts.sub_args)
            attempt.screen = transcript
            attempt.recipient_prompts = list(callee.prompts)
            attempt.recipient_keys = list(callee.keys)
            gosub_result = callee.vars.get("GOSUB_RESULT")
            attempt.gosub_result = gosub_result
            attempt.gosub_retval = callee.vars.get("GOSUB_RETVAL")
            if caller.dead and not gosub_result:
                # Captured (advancepay/*-caller-gone-screening): Dial still ends ANSWER, joins the
                # hung-up called channel into a bridge for an instant, then returns -1.
                return _instant_bridge(sim, caller, callee, attempt, "caller")
            if caller.dead:
                return _end(sim, caller, callee, attempt, "CANCEL", -1, "caller")
            if gosub_result:
                verdict = gosub_result.upper()
                if attempt.gosub_retval is not None:
                    _set(caller, "GOSUB_RETVAL", attempt.gosub_retval)
                caller.hangupcause = 16
                if verdict in ("BUSY", "CONGESTION"):
                    return _end(sim, caller, callee, attempt, verdict, 0, "gosub")
                if verdict == "CONTINUE":
                    return _end(sim, caller, callee, attempt, "ANSWER", 0, "gosub")
                if verdict == "ABORT":
                    caller.soft_hangup(16, "gosub")
                    return _end(sim, caller, callee, attempt, "ANSWER", -1, "gosub")
            if callee.dead:
                # The called channel hung up inside U(): Asterisk unwinds the Gosub ("Abnormal
                # 'Gosub(...)' exit", screen-sub's last lines never run), then Dial ends ANSWER and
                # joins the dead called channel alone into a bridge for an instant; the caller never
                # enters it and stays up; Dial returns -1 (advancepay/*-recipient-hangs-up).
                caller.hangupcause = callee.hangupcause or 16
                return _instant_bridge(sim, caller, callee, attempt, "recipient")
        # ---- bridge
        caller.extra["dial_peer"] = callee      # an Originate's ;1 hears this party (world.py)
        caller.answer()
        return await _bridge(sim, caller, callee, attempt, opts, recipient.talk)
    finally:
        if not callee.destroyed:
            callee.soft_hangup(16, "dial")
            sim.destroy_pair(callee, far)


def _set_times(sim: Simulator, caller: Channel, attempt: DialAttempt) -> None:
    now = sim.clock.now()
    if caller.answered_at is not None:
        ms = int((now - caller.answered_at) * 1000)
        attempt.answeredtime_ms = ms
        _set(caller, "ANSWEREDTIME", str(ms // 1000))
        _set(caller, "ANSWEREDTIME_MS", str(ms))
    ms = int((now - caller.created) * 1000)
    attempt.dialedtime_ms = ms
    _set(caller, "DIALEDTIME", str(ms // 1000))
    _set(caller, "DIALEDTIME_MS", str(ms))


def _end(
    sim: Simulator, caller: Channel, callee: Channel, attempt: DialAttempt, status: str, result: int, by: str
) -> int:
    attempt.status = status
    attempt.ended = sim.clock.now()
    attempt.ended_by = attempt.ended_by or by
    sim.events.emit(
        "DialEnd",
        [("Privilege", "call,all"), *caller.snapshot(), *callee.snapshot("Dest"), ("DialStatus", status)],
    )
    _set(caller, "DIALSTATUS", status)
    return result


def _bridge_fields(bridge_id: str) -> list[tuple[str, str]]:
    return [
        ("BridgeUniqueid", bridge_id),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"),
    ]


def _bridge_event(sim: Simulator, event: str, fields: list[tuple[str, str]], count: int,
                  chan: Channel | None = None) -> None:
    sim.events.emit(
        event,
        [
            ("Privilege", "call,all"),
            *fields,
            ("BridgeNumChannels", str(count)),
            ("BridgeVideoSourceMode", "none"),
            *(chan.snapshot() if chan is not None else []),
        ],
    )


def _instant_bridge(sim: Simulator, caller: Channel, callee: Channel, attempt: DialAttempt, by: str) -> int:
    """Dial after U() with a hung-up party: DialEnd ANSWER, then a bridge entered and left at once (the
    callee alone, as captured), ANSWEREDTIME/DIALEDTIME set as
    after any bridge, DIALSTATUS=ANSWER, result -1. No talk: `bridge_start` stays None."""
    sim.events.emit(
        "DialEnd",
        [("Privilege", "call,all"), *caller.snapshot(), *callee.snapshot("Dest"), ("DialStatus", "ANSWER")],
    )
    fields = _bridge_fields(sim.new_bridge_id())
    members = [callee]   # a dead caller may race in too (seen once, not in the committed capture)
    _bridge_event(sim, "BridgeCreate", fields, 0)
    for n, ch in enumerate(members, 1):
        _bridge_event(sim, "BridgeEnter", fields, n, ch)
    for n, ch in enumerate(reversed(members), 1):
        _bridge_event(sim, "BridgeLeave", fields, len(members) - n, ch)
    _bridge_event(sim, "BridgeDestroy", fields, 0)
    attempt.instant_bridge_at = sim.clock.now()
    _set_times(sim, caller, attempt)
    _set(caller, "DIALSTATUS", "ANSWER")
    attempt.status = "ANSWER"
    attempt.ended = sim.clock.now()
    attempt.ended_by = attempt.ended_by or by
    return -1


async def _bridge(
    sim: Simulator,
    caller: Channel,
    callee: Channel,
    attempt: DialAttempt,
    opts: DialOptions,
    talk: float | None,
) -> int:
    sim.events.emit(
        "DialEnd",
        [("Privilege", "call,all"), *caller.snapshot(), *callee.snapshot("Dest"), ("DialStatus", "ANSWER")],
    )
    bridge_id = sim.new_bridge_id()
    caller.bridge_id = callee.bridge_id = bridge_id
    bridge_fields = [
        ("BridgeUniqueid", bridge_id),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"),
    ]
    sim.events.emit(
        "BridgeCreate",
        [
            ("Privilege", "call,all"),
            *bridge_fields,
            ("BridgeNumChannels", "0"),
            ("BridgeVideoSourceMode", "none"),
        ],
    )
    for n, ch in enumerate((callee, caller), 1):
        sim.events.emit(
            "BridgeEnter",
            [
                ("Privilege", "call,all"),
                *bridge_fields,
                ("BridgeNumChannels", str(n)),
                ("BridgeVideoSourceMode", "none"),
                *ch.snapshot(),
            ],
        )
    start = sim.clock.now()
    attempt.bridge_start = start
    handset = caller.extra.get("handset")
    if handset is not None and handset.hangup_during_bridge is not None:
        sim.schedule_hangup(caller, handset.hangup_during_bridge, "handset")
    if talk is not None:
        sim.schedule_hangup(callee, talk, "recipient")
    limit_task = None
    if opts.limit_ms is not None:
        limit_task = asyncio.ensure_future(_limit_timer(sim, caller, attempt, opts))
    waiters = {caller.hangup_future(), callee.hangup_future()}
    if limit_task is not None:
        waiters.add(limit_task)
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if limit_task is not None and not limit_task.done():
        limit_task.cancel()
    attempt.bridge_end = sim.clock.now()
    for n, ch in enumerate((callee, caller)):
        sim.events.emit(
            "BridgeLeave",
            [
                ("Privilege", "call,all"),
                *bridge_fields,
                ("BridgeNumChannels", str(1 - n)),
                ("BridgeVideoSourceMode", "none"),
                *ch.snapshot(),
            ],
        )
    sim.events.emit(
        "BridgeDestroy",
        [
            ("Privilege", "call,all"),
            *bridge_fields,
            ("BridgeNumChannels", "0"),
            ("BridgeVideoSourceMode", "none"),
        ],
    )
    caller.bridge_id = callee.bridge_id = ""
    _set_times(sim, caller, attempt)
    _set(caller, "DIALSTATUS", "ANSWER")
    attempt.status = "ANSWER"
    attempt.ended = sim.clock.now()
    if attempt.limit_hit:
        attempt.ended_by = "limit"
        caller.hangupcause = 16
        if not opts.g:
            caller.soft_hangup(16, "limit")
            return -1
        return 0
    if caller.dead:
        attempt.ended_by = "caller"
        return -1
    attempt.ended_by = "recipient"
    caller.hangupcause = callee.hangupcause or 16
    return -1


async def _limit_timer(sim: Simulator, caller: Channel, attempt: DialAttempt, opts: DialOptions) -> None:
    assert opts.limit_ms is not None
    limit = opts.limit_ms / 1000
    elapsed = 0.0
    if opts.warn_ms and opts.warn_ms < opts.limit_ms:
        first = limit - opts.warn_ms / 1000
        await sim.clock.sleep(first)
        elapsed = first
        while True:
            remaining = limit - elapsed
            files = _warning_files(caller, remaining)
            attempt.warning_at = attempt.warning_at or sim.clock.now()
            attempt.warning_files.extend(files)
            caller.prompts.extend(files)
            if not opts.repeat_ms or remaining - opts.repeat_ms / 1000 <= 0:
                break
            await sim.clock.sleep(opts.repeat_ms / 1000)
            elapsed += opts.repeat_ms / 1000
    await sim.clock.sleep(limit - elapsed)
    timeout_file = caller.get_var("LIMIT_TIMEOUT_FILE")
    if timeout_file:
        caller.prompts.append(timeout_file)
        attempt.warning_files.append(timeout_file)
    attempt.limit_hit = True


def _warning_files(caller: Channel, remaining: float) -> list[str]:
    custom = caller.get_var("LIMIT_WARNING_FILE")
    if custom:
        return [custom]
    secs = max(0, int(remaining) - 1)  # Asterisk said "4 seconds" for a 5 s warning in the capture
    return ["vm-youhave", f"digits/{secs}", "queue-seconds"]
