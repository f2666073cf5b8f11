"""Our own captures (tests/data/asterisk-transcripts/advancepay/, made by tests/support/capture.py between
a real Asterisk 22.10.1 and `callcontrol serve`) against the simulator (issue #9).

The screening AGI sessions are replayed byte for byte: the simulator runs the shipped screen-sub on the
called channel of a Dial like the controller's, and the controller side of the capture is sent at its
own times. Whole calls (the inmate's AGI over ~30 s of real prompts, the controller's AMI session with
both Local pairs of apc-outbound and the test recipient's dialplan) are not replayed line for line: the
simulator has no real prompt lengths and does not run the recipient's dialplan. For those the facts
that matter are asserted on the capture and then on the simulator: Dial's result and DIALSTATUS after an
aborted U() Gosub, the momentary bridge AMI shows, the HANGUP lines, where a late `#` goes.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from callcontrol.platform.clock import ManualClock
from callcontrol.sim import HangUp, Keys, Recipient, SimConfig, Simulator
from callcontrol.sim.dialplan import Step, handset_sim_context
from callcontrol.sim.transcripts import TRANSCRIPT_DIR, Capture, Conductor, parse
from tests.support import transcripts as tx

OURS = TRANSCRIPT_DIR / "advancepay"
DIAL_OPTS = "U(screen-sub^{call_id})L(900000:60000)"


def load(name: str) -> Capture:
    return parse(OURS / f"{name}.txt")


def agi_lines(name: str) -> list[tuple[str, bytes]]:
    events = tx.load(OURS / f"{name}.txt").session.events
    return [(e.direction, e.data) for e in events if e.direction != "##"]


def reply_to(name: str, command_prefix: bytes) -> list[bytes]:
    """The `>>` lines after the first command starting with `command_prefix`, up to the next command."""
    lines = agi_lines(name)
    i = next(k for k, (d, data) in enumerate(lines) if d == "<<" and data.startswith(command_prefix))
    out = []
    for d, data in lines[i + 1:]:
        if d == "<<":
            break
        out.append(data)
    return out


def ami_events(name: str) -> list[dict[str, str]]:
    view = tx.ami_view(tx.load(OURS / f"{name}.txt").session)
    msgs = [*view.before, *(m for s in view.steps for m in s.replies)]
    out = []
    for m in msgs:
        fields = dict(line.split(": ", 1) for line in m.decode().split("\r\n") if ": " in line)
        if "Event" in fields:
            out.append(fields)
    return out


# ----------------------------------------------------------------------------- what the captures show


def test_the_captures_are_there() -> None:
    names = {p.stem for p in OURS.glob("*.txt")}
    for scenario in ("accepted", "refused", "recipient-hangs-up", "caller-gone-screening"):
        assert {f"fastagi-{scenario}-inmate-call", f"fastagi-{scenario}-screen", f"ami-{scenario}"} <= names
    assert "fastagi-deposit-expiry-hash-deposit" in names
    for path in OURS.glob("*.txt"):
        assert tx.load(path).sessions, path          # every file parses in the README's line format


@pytest.mark.parametrize("scenario", ["recipient-hangs-up", "caller-gone-screening"])
def test_read_on_a_hang_up_answers_0_and_readstatus_says_hangup(scenario: str) -> None:
    assert reply_to(f"fastagi-{scenario}-screen", b"EXEC Read ") == [b"200 result=0\n"]
    # the HANGUP line comes at once when the next command arrives; the command is still answered
    assert reply_to(f"fastagi-{scenario}-screen", b"GET FULL VARIABLE") == [
        b"HANGUP\n", b"200 result=1 (HANGUP|)\n", b"HANGUP\n"]     # the last: after our half-close


@pytest.mark.parametrize(("scenario", "after"), [
    ("recipient-hangs-up", [b"200 result=-1\n"]),
    ("caller-gone-screening", [b"200 result=-1\n"]),
])
def test_dial_after_an_aborted_screening_gosub_returns_minus_1(scenario: str, after: list) -> None:
    assert reply_to(f"fastagi-{scenario}-inmate-call", b"EXEC Dial ") == after
    status = reply_to(f"fastagi-{scenario}-inmate-call", b"GET VARIABLE DIALSTATUS")
    assert status[-1] == b"200 result=1 (ANSWER)\n"
    assert (b"HANGUP\n" in status) == (scenario == "caller-gone-screening")   # only the inmate is gone


def _outbound_bridge(scenario: str) -> list[tuple[str, str]]:
    """(event, channel) of the bridge Dial makes for the screened leg (apc-outbound ;1)."""
    events = ami_events(f"ami-{scenario}")
    start = max(i for i, e in enumerate(events) if e["Event"] == "DialEnd"
                and e.get("Channel", "").startswith("Local/0701@facility-phones"))
    out = []
    for e in events[start:]:
        if e["Event"].startswith("Bridge") or e["Event"] == "DialEnd":
            chan = e.get("Channel", "")
            out.append((e["Event"], "callee" if "@apc-outbound-" in chan and chan.endswith(";1") else
                        "caller" if "@facility-phones-" in chan else chan))
        if e["Event"] == "BridgeDestroy":
            break
    return out


def test_ami_shows_the_dead_callee_alone_in_a_momentary_bridge() -> None:
    assert _outbound_bridge("recipient-hangs-up") == [
        ("DialEnd", "caller"), ("BridgeCreate", ""), ("BridgeEnter", "callee"), ("BridgeLeave", "callee"),
        ("BridgeDestroy", "")]


def test_ami_shows_the_dead_callee_in_a_momentary_bridge_when_the_inmate_left() -> None:
    # The dead inmate channel may race into that bridge too (it did in an earlier capture run:
    # BridgeEnter callee, caller, BridgeLeave caller, callee), or not (this capture).
    got = [ev for ev in _outbound_bridge("caller-gone-screening") if ev[1] != "caller" or ev[0] == "DialEnd"]
    assert got == [("DialEnd", "caller"), ("BridgeCreate", ""), ("BridgeEnter", "callee"),
                   ("BridgeLeave", "callee"), ("BridgeDestroy", "")]


def test_a_hash_keyed_after_a_full_get_data_ends_the_next_one_empty() -> None:
    name = "fastagi-deposit-expiry-hash-deposit"
    assert reply_to(name, b"GET DATA advancepay/en/deposit_enter_expiry 8000 4") == [b"200 result=1230\n"]
    assert reply_to(name, b"GET DATA advancepay/en/deposit_enter_cvv 8000 4") == [b"200 result=\n"]


def test_record_file_stopped_during_its_beep_says_randomerror() -> None:
    reply = reply_to("fastagi-accepted-inmate-call", b"RECORD FILE ")
    assert reply == [b"200 result=35 (randomerror) endpos=0\n"]


# ----------------------------------------------------------------------------- the simulator replays


def _env(cap: Capture) -> dict[str, str]:
    out = {}
    for ln in cap.lines:
        if ln.direction == ">>" and ln.data.startswith(b"agi_"):
            k, _, v = ln.data.decode().rstrip("\n").partition(": ")
            out[k] = v
    return out


def _env_by_form(expected: bytes, got: bytes) -> bool:
    """Values a capture run picks (uniqueid epoch, thread id, the proxy's port) compare by form."""
    for key, form in ((b"agi_uniqueid", rb"\d+\.\d+"), (b"agi_threadid", rb"\d+"),
                      (b"agi_request", rb"agi://127\.0\.0\.1:\d+/\S+")):
        if expected.startswith(key + b": ") and got.startswith(key + b": "):
            return re.fullmatch(key + b": " + form + b"\n", got) is not None
    return False


def _endpos_within(expected: bytes, got: bytes) -> bool:
    """`endpos=` (samples played) within 10 ms: the simulator plays a prompt's length, not its frames."""
    a = re.fullmatch(rb"(200 result=\S+) endpos=(\d+)\n", expected)
    b = re.fullmatch(rb"(200 result=\S+) endpos=(\d+)\n", got)
    return a is not None and b is not None and a.group(1) == b.group(1) and abs(int(a[2]) - int(b[2])) <= 80


async def _replay_screen(scenario: str, recipient: Recipient) -> tuple[Conductor, Simulator]:
    screen = load(f"fastagi-{scenario}-screen")
    env = _env(screen)
    call_id = env["agi_request"].split("call_id=")[1]
    number = env["agi_channel"].split("@")[0].split("/")[1]
    host = env["agi_request"].split("/")[2]
    clock = ManualClock(start=screen.start - 1.0)
    conductor = Conductor(clock, agi_captures=[screen],
                          comparators=[(lambda s, e: True, _env_by_form),
                                       (lambda s, e: True, _endpos_within)])
    port = await conductor.listen()
    dialplan = {
        "facility-phones": {"0701": [
            Step("Answer", ""),
            Step("Dial", f"Local/{number}@apc-outbound,8,{DIAL_OPTS.format(call_id=call_id)}"),
            Step("Hangup", ""),
        ]},
        "handset-sim": handset_sim_context(),
        # the shipped [screen-sub] (asterisk_conf/extensions.conf), its ExecIf simplified
        "screen-sub": {"s": [
            Step("Set", "SCREEN_RESULT="),
            Step("AGI", "agi://{agi}/screen?call_id=${ARG1}"),
            Step("ExecIf", '$["${GOSUB_RESULT}${SCREEN_RESULT}" = ""]?Set(GOSUB_RESULT=ABORT)'),
            Step("Return", "${SCREEN_RESULT}"),
        ]},
    }
    # the prompts' lengths from the capture's endpos; real playback ends a few ms before endpos/8000 s
    prompts = {"advancepay/en/call_refused_recipient": 22257 / 8000 - 0.004,
               "advancepay/en/call_accepted": 25479 / 8000 - 0.004}
    config = SimConfig(agi_host=host, subroutines={}, dialplan=dialplan, local_seq_start=0,
                       threadids=[int(env["agi_threadid"])] * 4, default_prompt_seconds=60.0, seed=1,
                       prompts=prompts)
    sim = Simulator(("127.0.0.1", port), clock=clock, config=config, ami_port=None)
    sim.add_recipient(recipient)
    async with sim:
        await sim.originate("Local/0701@facility-phones", "handset-sim", "talk", callerid=("Station", "0701"),
                            variables=[], channel_id="t001-1", action_id=None, is_async=True)
        await conductor.run()
        await clock.advance(5)
    await conductor.close()
    return conductor, sim


def _check(conductor: Conductor) -> None:
    detail = "\n".join(f"#{m.index}: expected {m.expected!r} got {m.got!r}"
                       for m in conductor.mismatches[:10])
    assert conductor.compared > 20 and not conductor.mismatches, detail


def test_sim_replays_the_recipient_hanging_up_during_the_screening_read() -> None:
    conductor, sim = asyncio.run(_replay_screen(
        "recipient-hangs-up", Recipient("13125551209", ring=0.3, actions=[HangUp(after=0.005)], talk=None)))
    _check(conductor)
    (dial,) = sim.dials
    assert dial.status == "ANSWER" and dial.instant_bridge_at is not None
    assert dial.bridge_start is None and dial.talk == 0 and dial.answeredtime_ms is not None


def test_sim_replays_a_refusal() -> None:
    conductor, sim = asyncio.run(_replay_screen(
        "refused", Recipient("13125551203", ring=0.3, actions=[Keys("2", after=0.275)], talk=None)))
    _check(conductor)
    (dial,) = sim.dials
    assert dial.status == "BUSY" and dial.instant_bridge_at is None and dial.bridge_start is None


def test_sim_replays_an_acceptance() -> None:
    conductor, sim = asyncio.run(_replay_screen(
        "accepted", Recipient("13125551201", ring=0.3, actions=[Keys("1", after=0.275)], talk=1)))
    _check(conductor)
    (dial,) = sim.dials
    assert dial.status == "ANSWER" and dial.bridge_start is not None and dial.instant_bridge_at is None
