"""Replay the captured FastAGI/AMI transcripts against the simulator, byte for byte.

The controller side of every capture (its `<<` lines, half-closes and closes) is sent over real TCP at
the capture's own times on a ManualClock, with the simulator scripted like the capture harness (which
keys the handset pressed, how recipients behaved). Every `>>` line the simulator produces must equal
the capture's; the only value-level exceptions are the ANSWEREDTIME_MS/DIALEDTIME_MS replies (elapsed
milliseconds, compared within 50 ms) and, on AMI, values Asterisk takes from the wall clock, memory
addresses, random numbers or ephemeral ports (compared by form).
"""

from __future__ import annotations

import asyncio

import pytest

from callcontrol.clock import ManualClock
from callcontrol.sim import Handset, Interrupt, Keys, Recipient, Record, SimConfig, Simulator, Timeout
from callcontrol.sim.dialplan import transcript_dialplan
from callcontrol.sim.transcripts import (
    Capture,
    Conductor,
    after_command,
    load,
    numeric_reply_within,
)
from callcontrol.sim.world import DEFAULT_PROMPTS


def threadids(*captures: Capture) -> list[int]:
    out = []
    for c in captures:
        for data in c.sent_by_asterisk():
            if data.startswith(b"agi_threadid: "):
                out.append(int(data.split(b": ")[1]))
    return out


def config(uniqueid_start: int, seq: int, *caps: Capture) -> SimConfig:
    return SimConfig(agi_host="127.0.0.1:4573", subroutines={}, dialplan=transcript_dialplan(),
                     uniqueid_start=uniqueid_start, local_seq_start=seq, threadids=threadids(*caps),
                     handset_context=("handset-sim", "talk"), startup_time=1795312267.95, seed=1,
                     known_prompts=set(DEFAULT_PROMPTS))


def assert_replayed(conductor: Conductor) -> None:
    assert conductor.compared > 20
    detail = "\n".join(f"{m.capture}#{m.index}: expected {m.expected!r} got {m.got!r}"
                       for m in conductor.mismatches[:15])
    assert not conductor.mismatches, detail


def elapsed_ms_tolerance() -> list:
    return [(after_command("GET VARIABLE ANSWEREDTIME_MS", "GET VARIABLE DIALEDTIME_MS"),
             numeric_reply_within(50))]


async def _replay_caller(main: str, subs: list[str], uniqueid_start: int, seq: int, call_kw: dict,
                         recipients: list[Recipient]) -> tuple[Conductor, object]:
    caps = [load(main), *[load(s) for s in subs]]
    clock = ManualClock(start=caps[0].start - 0.0005)
    conductor = Conductor(clock, agi_captures=caps, comparators=elapsed_ms_tolerance())
    port = await conductor.listen()
    sim = Simulator(("127.0.0.1", port), clock=clock, config=config(uniqueid_start, seq, *caps), ami_port=None)
    for r in recipients:
        sim.add_recipient(r)
    async with sim:
        call = sim.start_call(**call_kw)
        await conductor.run()
        await clock.advance(5)
        result = await asyncio.wait_for(call, 5)
    await conductor.close()
    return conductor, result


def test_inmate_call_with_three_screened_dials() -> None:
    handset = Handset([
        Interrupt("5", after=1.045),             # during the second vm-intro ("567"), not the first ("12")
        Timeout(),                                # GET DATA: nothing pressed
        Keys("1234", after=0.2, gap=0.4),         # GET DATA 1234
        Keys("99#", after=0.2, gap=0.3),          # GET DATA 99#
        Timeout(),                                # WAIT FOR DIGIT 2000
        Keys("7", after=0.7),                     # WAIT FOR DIGIT 5000
        Timeout(),                                # RECORD FILE, no key
        Record("#", after=1.7),                   # RECORD FILE stopped by #
    ])
    recipients = [
        Recipient("5551234", ring=2, keys="1", key_delay=1.70, talk=7.8),
        Recipient("5550000", ring=2, keys="2", key_delay=1.70, talk=None),
        Recipient("5550001", answer=False),
    ]
    conductor, result = asyncio.run(_replay_caller(
        "fastagi-inmate-call", ["fastagi-accept-sub", "fastagi-accept-sub-reject"], 0, 0,
        dict(facility="FAC-07", station="station-A", extension="100", caller_name="Inmate 0042",
             variables={"INMATE_ID": "INM-0042", "INMATE_PIN": "4455"}, handset=handset), recipients))
    assert_replayed(conductor)
    assert [d.status for d in result.dials] == ["ANSWER", "BUSY", "NOANSWER", "CHANUNAVAIL"]
    assert result.dials[0].screen is not None and result.dials[0].gosub_result is None
    assert result.dials[1].gosub_result == "BUSY" and result.dials[1].gosub_retval == "REJECTED"
    assert result.keys == ["5", "1", "2", "3", "4", "9", "9", "#", "7", "#"]
    assert result.hangup_by == "controller"


@pytest.mark.parametrize(("capture", "ext", "uid", "seq"), [
    ("fastagi-caller-hangup", "101", 10, 5),
    ("fastagi-caller-hangup-idle", "104", 12, 6),
])
def test_caller_hangs_up(capture: str, ext: str, uid: int, seq: int) -> None:
    script = capture.removeprefix("fastagi-")
    conductor, result = asyncio.run(_replay_caller(
        capture, [], uid, seq,
        dict(facility="", station="", extension=ext, caller_name=f"Inmate 0{ext}", script=script, query="",
             agi_args=[], variables={"INMATE_ID": f"INM-0{ext}"}, handset=Handset(hangup_after=6.0)), []))
    assert_replayed(conductor)
    assert result.hangup_by == "handset"
