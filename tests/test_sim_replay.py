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

from callcontrol.platform.clock import ManualClock
from callcontrol.sim import Handset, Interrupt, Keys, Recipient, Record, SimConfig, Simulator, Timeout
from callcontrol.sim.dialplan import transcript_dialplan
from callcontrol.sim.transcripts import (
    Capture,
    Conductor,
    after_command,
    is_ami,
    load,
    numeric_reply_within,
    volatile_ami_header,
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
    return SimConfig(
        agi_host="127.0.0.1:4573",
        subroutines={},
        dialplan=transcript_dialplan(),
        uniqueid_start=uniqueid_start,
        local_seq_start=seq,
        threadids=threadids(*caps),
        handset_context=("handset-sim", "talk"),
        startup_time=1795312267.95,
        seed=1,
        known_prompts=set(DEFAULT_PROMPTS),
    )


def assert_replayed(conductor: Conductor) -> None:
    assert conductor.compared > 20
    detail = "\n".join(
        f"{m.capture}#{m.index}: expected {m.expected!r} got {m.got!r}" for m in conductor.mismatches[:15]
    )
    assert not conductor.mismatches, detail


def elapsed_ms_tolerance() -> list:
    return [
        (
            after_command("GET VARIABLE ANSWEREDTIME_MS", "GET VARIABLE DIALEDTIME_MS"),
            numeric_reply_within(50),
        )
    ]


async def _replay_caller(
    main: str, subs: list[str], uniqueid_start: int, seq: int, call_kw: dict, recipients: list[Recipient]
) -> tuple[Conductor, object]:
    caps = [load(main), *[load(s) for s in subs]]
    clock = ManualClock(start=caps[0].start - 0.0005)
    conductor = Conductor(clock, agi_captures=caps, comparators=elapsed_ms_tolerance())
    port = await conductor.listen()
    sim = Simulator(
        ("127.0.0.1", port), clock=clock, config=config(uniqueid_start, seq, *caps), ami_port=None
    )
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
    handset = Handset(
        [
            Interrupt("5", after=1.045),  # during the second vm-intro ("567"), not the first ("12")
            Timeout(),  # GET DATA: nothing pressed
            Keys("1234", after=0.2, gap=0.4),  # GET DATA 1234
            Keys("99#", after=0.2, gap=0.3),  # GET DATA 99#
            Timeout(),  # WAIT FOR DIGIT 2000
            Keys("7", after=0.7),  # WAIT FOR DIGIT 5000
            Timeout(),  # RECORD FILE, no key
            Record("#", after=1.7),  # RECORD FILE stopped by #
        ]
    )
    recipients = [
        Recipient("5551234", ring=2, keys="1", key_delay=1.70, talk=7.8),
        Recipient("5550000", ring=2, keys="2", key_delay=1.70, talk=None),
        Recipient("5550001", answer=False),
    ]
    conductor, result = asyncio.run(
        _replay_caller(
            "fastagi-inmate-call",
            ["fastagi-accept-sub", "fastagi-accept-sub-reject"],
            0,
            0,
            dict(
                facility="FAC-07",
                station="station-A",
                extension="100",
                caller_name="Inmate 0042",
                variables={"INMATE_ID": "INM-0042", "INMATE_PIN": "4455"},
                handset=handset,
            ),
            recipients,
        )
    )
    assert_replayed(conductor)
    assert [d.status for d in result.dials] == ["ANSWER", "BUSY", "NOANSWER", "CHANUNAVAIL"]
    assert result.dials[0].screen is not None and result.dials[0].gosub_result is None
    assert result.dials[1].gosub_result == "BUSY" and result.dials[1].gosub_retval == "REJECTED"
    assert result.keys == ["5", "1", "2", "3", "4", "9", "9", "#", "7", "#"]
    assert result.hangup_by == "controller"


@pytest.mark.parametrize(
    ("capture", "ext", "uid", "seq"),
    [
        ("fastagi-caller-hangup", "101", 10, 5),
        ("fastagi-caller-hangup-idle", "104", 12, 6),
    ],
)
def test_caller_hangs_up(capture: str, ext: str, uid: int, seq: int) -> None:
    script = capture.removeprefix("fastagi-")
    conductor, result = asyncio.run(
        _replay_caller(
            capture,
            [],
            uid,
            seq,
            dict(
                facility="",
                station="",
                extension=ext,
                caller_name=f"Inmate 0{ext}",
                script=script,
                query="",
                agi_args=[],
                variables={"INMATE_ID": f"INM-0{ext}"},
                handset=Handset(hangup_after=6.0),
            ),
            [],
        )
    )
    assert_replayed(conductor)
    assert result.hangup_by == "handset"


async def _replay(
    agi: list[str],
    ami: list[str],
    uniqueid_start: int,
    seq: int,
    recipients: list[Recipient],
    originate: dict | None = None,
    keep: dict | None = None,
) -> Conductor:
    agi_caps = [load(n) for n in agi]
    ami_caps = [load(n) for n in ami]
    first = min([c.start for c in agi_caps + ami_caps] + ([originate["at"]] if originate else []))
    clock = ManualClock(start=first - 0.0005)
    comparators = [*elapsed_ms_tolerance(), (is_ami, volatile_ami_header)]
    conductor = Conductor(clock, agi_captures=agi_caps, ami_captures=ami_caps, comparators=comparators)
    port = await conductor.listen()
    sim = Simulator(
        ("127.0.0.1", port), clock=clock, config=config(uniqueid_start, seq, *agi_caps), ami_port=0
    )
    for r in recipients:
        sim.add_recipient(r)
    async with sim:
        conductor.ami_port = sim.ami.port
        if originate is not None:
            delay = originate.pop("at") - first
            await clock.advance_to(delay)
            await sim.originate(**originate)
        await conductor.run()
        await clock.advance(30)
    await conductor.close()
    if keep is not None:
        keep["dials"] = list(sim.dials)
    return conductor


def test_ami_login_ping_errors_logoff() -> None:
    assert_replayed(asyncio.run(_replay([], ["ami-login"], 0, 0, [])))


def test_ami_login_refused_after_permission_denied() -> None:
    conductor = asyncio.run(_replay([], ["ami-login-failed"], 0, 0, []))
    assert conductor.compared >= 9
    assert not conductor.mismatches, conductor.mismatches


def test_ami_originate_getvar_setvar_status_hangup_and_failed_originates() -> None:
    """AMI events of a whole originated call plus the AGI side of the AMI Hangup, together."""
    assert_replayed(asyncio.run(_replay(["fastagi-ami-hangup"], ["ami-originate-hangup"], 14, 7, [])))


def _originate(ext: str, at: float) -> dict:
    return dict(
        at=at,
        channel=f"Local/{ext}@facility-phones",
        context="handset-sim",
        exten="talk",
        callerid=(f"Inmate 0{ext}", ext),
        variables=[],
        channel_id=None,
        action_id=None,
        is_async=True,
    )


def test_screened_dial_with_limit_from_dialplan() -> None:
    """facility-phones,103: Answer, Dial(...,U(accept-sub)L(10000:5000)); the accept AGI replays exactly
    and the L() warning/limit fall 5 s/10 s after the bridge (the capture: 5.001 s and 10.002 s)."""
    captured: dict = {}
    conductor = asyncio.run(
        _replay(
            ["fastagi-accept-sub-limit"],
            [],
            20,
            10,
            [Recipient("5559000", ring=2, keys="1", key_delay=1.70, talk=None)],
            originate=_originate("103", load("ami-limit").start + 0.304),
            keep=captured,
        )
    )
    assert_replayed(conductor)
    (dial,) = captured["dials"]
    assert dial.status == "ANSWER" and dial.limit_hit and dial.ended_by == "limit"
    assert dial.warning_at is not None and dial.bridge_start is not None and dial.bridge_end is not None
    assert abs(dial.warning_at - dial.bridge_start - 5.0) < 1e-6
    assert abs(dial.bridge_end - dial.bridge_start - 10.0) < 1e-6
    assert dial.warning_files == ["vm-youhave", "digits/4", "queue-seconds"]
    assert dial.answeredtime_ms is not None and abs(dial.answeredtime_ms - 14685) <= 50


def test_unanswered_caller_answeredtime_counts_from_bridge() -> None:
    """facility-phones,105 (caller not answered before Dial): ANSWEREDTIME counts from the bridge."""
    captured: dict = {}
    conductor = asyncio.run(
        _replay(
            ["fastagi-accept-sub-unanswered-caller"],
            [],
            24,
            12,
            [Recipient("5551234", ring=2, keys="1", key_delay=1.70, talk=7.8)],
            originate=_originate("105", load("ami-dial-unanswered-caller").start + 0.304),
            keep=captured,
        )
    )
    assert_replayed(conductor)
    (dial,) = captured["dials"]
    assert dial.answeredtime_ms is not None and dial.dialedtime_ms is not None
    assert abs(dial.answeredtime_ms - 7813) <= 50 and abs(dial.dialedtime_ms - 11982) <= 50
