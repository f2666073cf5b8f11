"""End to end: controller + real redis-server + the simulated Asterisk over real TCP, one call each."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from callcontrol.sim import Handset, HangUp, Recipient
from tests.e2e_support import PIN, handset, prompt_ids, running, seed

MARIA = "+13125551234"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_accepted_call_is_billed_from_acceptance(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="1", talk=150))
            dial = result.last_dial
            assert dial is not None and dial.status == "ANSWER" and dial.bridge_start is not None
            assert dial.options.startswith("U(screen-sub^") and "L(900000:60000)" in dial.options
            assert result.recorded                                    # MixMonitor on a normal call
            heard = prompt_ids(dial.recipient_prompts)
            assert heard[:1] == ["prepaid_call_from"] and "monitoring_notice" in heard
            assert heard[-1] == "call_accepted" and "balance_is" in heard and "rate_is" in heard
            assert prompt_ids(result.prompts)[-1] == "goodbye"
            # Settled by the inmate session, which says so: the hangup handler opens no AGI session.
            assert result.variables.get("CALL_SETTLED") == "1" and result.hangup_agi == []
            rec = h.record_for(MARIA)
            assert rec["outcome"] == "completed" and rec["recorded"] and not rec["privileged"]
            # Billing starts at acceptance, stored after the call_accepted prompt and just before the
            # bridge: the 150 s of talk, not the ~20 s of screening or the prompt (ANSWEREDTIME would
            # include those). At this time scale 5 ms of event-loop delay is a simulated second, so a
            # busy box may add one or two.
            assert 150 <= rec["billed_seconds"] <= 153
            assert rec["amount"] == 26                                # 3 minutes at 8.56 c
            assert await h.posted(account) == 500 - 26
            assert await h.available(account) == 500 - 26            # hold released
    run(go())


def test_a_name_asterisk_cannot_record_does_not_stop_the_call(tmp_path: Path, redis_url: str) -> None:
    # RECORD FILE into a directory Asterisk cannot write answers 200 result=-1 (writefile): the
    # recipient then hears the announcement without the name, and the call goes on as usual.
    from callcontrol.sim import SimConfig

    async def go() -> None:
        config = SimConfig(hangup_agi="hangup", writable_dirs=set())
        async with running(tmp_path, redis_url, sim_config=config) as h:
            account = await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="1", talk=30))
            dial = result.last_dial
            assert dial is not None and dial.bridge_start is not None
            heard = dial.recipient_prompts
            assert prompt_ids(heard)[:2] == ["prepaid_call_from", "an_inmate_at"]
            assert not [p for p in heard if "/names/" in p]
            rec = h.record_for(MARIA)
            assert rec["outcome"] == "completed" and rec["amount"] == 9
            assert await h.posted(account) == 500 - 9
    run(go())


def test_refused_call_costs_nothing(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="2"))
            dial = result.last_dial
            assert dial is not None and dial.status == "BUSY" and dial.bridge_start is None
            assert dial.gosub_retval == "REJECTED"
            assert "call_refused_recipient" in prompt_ids(dial.recipient_prompts)
            assert "call_refused" in prompt_ids(result.prompts)
            assert h.record_for(MARIA)["outcome"] == "refused"
            assert h.record_for(MARIA)["amount"] == 0
            assert (await h.ledger.balance(account)).posted == 500
            assert await h.available(account) == 500
    run(go())


def test_block_then_retry_is_refused_before_dialling(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            first = await h.call(handset("3125551234"), Recipient(MARIA, keys="9"))
            assert "facility_blocked_confirm" in prompt_ids(first.last_dial.recipient_prompts)
            assert "call_blocked_by_recipient" in prompt_ids(first.prompts)
            assert h.record_for(MARIA)["outcome"] == "blocked"
            assert await h.ledger.is_blocked("FAC-07", MARIA)
            second = await h.call(handset("3125551234"), Recipient(MARIA, keys="1"))
            assert second.dials == []
            assert "number_blocked_recipient" in prompt_ids(second.prompts)
            rec = h.records[-1]
            assert (rec["outcome"], rec["reason"]) == ("denied", "blocked_recipient")
            assert await h.available(account) == 500
    run(go())


def test_an_inmate_block_refuses_that_inmate_and_not_another(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            await h.ledger.set_block("web-block-1", "FAC-07", MARIA, True, source="holder-h1",
                                     inmate_id="1042")
            blocked = await h.call(handset("3125551234", pin=PIN), Recipient(MARIA, keys="1"))
            assert blocked.dials == []                                # refused before dialling
            assert "number_blocked_recipient" in prompt_ids(blocked.prompts)
            rec = h.records[-1]
            assert (rec["outcome"], rec["reason"]) == ("denied", "blocked_recipient")
            assert rec["inmate_id"] == "1042"
            assert await h.available(account) == 500
            other = await h.call(handset("3125551234", pin="10431357"), Recipient(MARIA, keys="1", talk=30))
            assert other.last_dial is not None and other.last_dial.bridge_start is not None
            rec = h.records[-1]
            assert (rec["outcome"], rec["inmate_id"]) == ("completed", "1043")
            assert await h.posted(account) == 500 - rec["amount"]
    run(go())


def test_no_answer_and_busy(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            a = await seed(h.ledger, MARIA, 500)
            b = await seed(h.ledger, "+13125552000", 500)
            r1 = await h.call(handset("3125551234"), Recipient(MARIA, answer=False))
            assert r1.last_dial.status == "NOANSWER"
            assert "call_not_answered" in prompt_ids(r1.prompts)
            r2 = await h.call(handset("3125552000"), Recipient("+13125552000", busy=True))
            assert r2.last_dial.status == "BUSY"
            assert "line_busy" in prompt_ids(r2.prompts)
            assert h.record_for(MARIA)["outcome"] == "no_answer"
            assert h.record_for("+13125552000")["outcome"] == "busy"
            assert await h.available(a) == 500 and await h.available(b) == 500
    run(go())


def test_unfunded_attempts_are_recorded(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            low = await seed(h.ledger, "+13125556000", 5)              # less than one minute (9 c)
            r1 = await h.call(handset("3125555000"), Recipient("+13125555000", keys="1"))
            assert r1.dials == [] and "no_account" in prompt_ids(r1.prompts)
            r2 = await h.call(handset("3125556000"), Recipient("+13125556000", keys="1"))
            assert r2.dials == [] and "insufficient_funds" in prompt_ids(r2.prompts)
            assert h.record_for("+13125555000")["outcome"] == "unfunded"
            assert h.record_for("+13125556000")["outcome"] == "unfunded"
            assert await h.available(low) == 5
    run(go())


def test_exactly_one_minute_of_funds(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 9)
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="1", talk=None))
            dial = result.last_dial
            assert "L(60000)" in dial.options                          # no warning on a 1-minute call
            assert dial.limit_hit
            assert abs((dial.bridge_end - dial.bridge_start) - 60) < 1.5
            rec = h.record_for(MARIA)
            assert rec["outcome"] == "completed" and rec["amount"] == 9
            assert await h.posted(account) == 0 and await h.available(account) == 0
    run(go())


def test_funds_run_out_mid_call(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 30)                  # 3 minutes cost 26 c
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="1", talk=None))
            dial = result.last_dial
            assert "L(180000:60000)" in dial.options and dial.limit_hit
            assert dial.warning_files and "time_warning" in dial.warning_files[0]
            rec = h.record_for(MARIA)
            assert rec["amount"] == 26 and rec["outcome"] == "completed"
            assert await h.posted(account) == 4 and await h.available(account) == 4
    run(go())


def test_two_simultaneous_calls_only_one_connects(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 15)                  # covers one call only
            pin2 = "10431357"
            t1 = h.sim.start_call("FAC-07", "0701", extension="0701", handset=handset("3125551234"),
                                  recipient=Recipient(MARIA, keys="1", talk=30))
            t2 = h.sim.start_call("FAC-07", "0702", extension="0702", handset=handset("3125551234", pin=pin2),
                                  recipient=Recipient(MARIA, keys="1", talk=30))
            r1, r2 = await asyncio.gather(t1, t2)
            dialled = [r for r in (r1, r2) if r.dials]
            assert len(dialled) == 1
            refused = r2 if dialled[0] is r1 else r1
            assert "insufficient_funds" in prompt_ids(refused.prompts)
            outcomes = sorted(r["outcome"] for r in h.records)
            assert outcomes == ["completed", "unfunded"]
            assert await h.posted(account) == 15 - 9
    run(go())


async def _hang_up_once_the_recipient_answered(h: Any) -> None:
    """The inmate hangs up the facility phone while the recipient hears the screening."""
    for _ in range(2000):
        live = await h.controller.store.live_calls()
        state = await h.controller.store.get(live[0][0]) if live else None
        if state is not None and state.answered_at:
            break
        await asyncio.sleep(0.005)
    caller = next(c for c in h.sim.channels.values() if c.role == "caller")
    caller.soft_hangup(16, "handset")


def test_caller_hangs_up_during_screening(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            # The recipient listens without pressing; the inmate gives up during the announcement.
            task = h.sim.start_call("FAC-07", "0701", extension="0701", handset=handset("3125551234"),
                                    recipient=Recipient(MARIA, keys="", ring=2))
            await _hang_up_once_the_recipient_answered(h)
            result = await task
            dial = result.last_dial
            # Real Asterisk (advancepay/*-caller-gone-screening): Dial ends ANSWER with a momentary
            # bridge of the dead leg, no talk.
            assert dial is not None and dial.bridge_start is None and dial.talk == 0
            rec = h.record_for(MARIA)
            assert rec["amount"] == 0 and rec["outcome"] in ("refused", "failed")
            await h.quiesce()
            assert await h.posted(account) == 500 and await h.available(account) == 500
    run(go())


def test_caller_hangs_up_during_screening_the_recipient_is_hung_up(tmp_path: Path, redis_url: str) -> None:
    # Asterisk runs the recipient's screening to its end although the inmate has hung up (the inmate's
    # AGI hears of it only when Dial returns): AMI's HangupRequest fixes the call's end at once and the
    # controller hangs up the recipient's leg, so the recipient neither waits through the announcement
    # nor gets to press a late 1; the record says the caller left, nothing is billed.
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            task = h.sim.start_call("FAC-07", "0701", extension="0701", handset=handset("3125551234"),
                                    recipient=Recipient(MARIA, keys="1", key_delay=8, ring=2))
            await _hang_up_once_the_recipient_answered(h)
            result = await task
            dial = result.last_dial
            assert dial is not None and dial.bridge_start is None and dial.talk == 0
            assert dial.status == "ANSWER" and dial.instant_bridge_at is not None
            assert "1" not in dial.recipient_keys              # hung up before the late 1
            rec = h.record_for(MARIA)
            assert (rec["outcome"], rec["reason"]) == ("failed", "caller_hangup")
            assert rec["amount"] == 0 and rec["billed_seconds"] == 0 and rec["accepted_at"] in ("", None)
            await h.quiesce()
            assert await h.posted(account) == 500 and await h.available(account) == 500
    run(go())


def test_recipient_hangs_up_during_screening(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234"), Recipient(MARIA, hangup_after_answer=4))
            dial = result.last_dial
            # Real Asterisk (advancepay/*-recipient-hangs-up): the screening Gosub is unwound, Dial
            # ends ANSWER (-1) and joins the dead leg alone into a bridge for an instant: no talk.
            assert dial.status == "ANSWER" and dial.instant_bridge_at is not None
            assert dial.bridge_start is None and dial.talk == 0
            rec = h.record_for(MARIA)
            assert rec["outcome"] == "refused" and rec["amount"] == 0
            assert await h.available(account) == 500
    run(go())


def test_pin_lockout_holds_across_calls(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            await seed(h.ledger, MARIA, 500)
            bad = Handset(actions=["1", "10420000", "10421111", "10422222"])
            r1 = await h.call(bad, Recipient(MARIA, keys="1"))
            heard = prompt_ids(r1.prompts)
            assert heard.count("pin_invalid") == 2 and "pin_locked" in heard and r1.dials == []
            r2 = await h.call(handset("3125551234", pin=PIN), Recipient(MARIA, keys="1"))
            assert "pin_locked" in prompt_ids(r2.prompts) and r2.dials == []
            assert [r["reason"] for r in h.records] == ["pin_locked", "pin_locked"]
            # Another inmate on the same phone is not affected.
            r3 = await h.call(handset("3125551234", pin="10431357"), Recipient(MARIA, keys="2"))
            assert r3.dials
    run(go())


def test_refused_numbers(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            cases = [("9005551234", "number_premium", "number_premium"),
                     ("31255512", "number_invalid", "number_invalid"),
                     ("8005551234", "number_toll_free", "number_toll_free"),
                     ("411", "number_short_code", "number_short_code"),
                     ("3125550199", "number_blocked_facility", "blocked_facility")]
            for digits, prompt, reason in cases:
                result = await h.call(handset(digits), Recipient("+1" + digits[-10:], keys="1"))
                assert result.dials == [], digits
                assert prompt in prompt_ids(result.prompts), (digits, result.prompts)
                assert h.records[-1]["outcome"] == "denied" and h.records[-1]["reason"] == reason
    run(go())


def test_allowed_list_inmate(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            await seed(h.ledger, "+13125552000", 500)
            result = await h.call(handset("3125552000", pin="10448642"), Recipient("+13125552000", keys="1"))
            assert result.dials == [] and "number_not_allowed" in prompt_ids(result.prompts)
    run(go())


def test_international_number_at_its_rate(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            uk = "+442079460000"
            account = await seed(h.ledger, uk, 1000)
            result = await h.call(handset("011442079460000"), Recipient(uk, keys="1", talk=200))
            assert result.last_dial.target == "Local/442079460000@apc-outbound"
            rec = h.record_for(uk)
            assert rec["call_class"] == "international"
            at = datetime.fromisoformat(rec["started_at"].replace("Z", "+00:00"))
            catalog = h.controller.ctx.catalog
            quote = catalog.quote("FAC-07", "011442079460000", at=at)
            assert quote.rate_per_minute == Decimal("0.12")              # the GB override
            assert rec["amount"] == quote.cost(rec["billed_seconds"])
            assert rec["amount"] > catalog.quote("FAC-07", "3125551234", at=at).cost(rec["billed_seconds"])
            assert await h.posted(account) == 1000 - rec["amount"]
    run(go())


def test_privileged_call_is_not_recorded(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            lawyer = "+13125550100"
            await seed(h.ledger, lawyer, 500)
            result = await h.call(handset("3125550100"), Recipient(lawyer, keys="1", talk=20))
            assert not result.recorded and result.mixmonitor_files == []
            assert "privileged_call_notice" in prompt_ids(result.prompts)
            heard = prompt_ids(result.last_dial.recipient_prompts)
            assert "privileged_notice_recipient" in heard and "monitoring_notice" not in heard
            rec = h.record_for(lawyer)
            assert rec["privileged"] and not rec["recorded"] and rec["outcome"] == "completed"
    run(go())


def test_outside_calling_hours(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        # 02:00 in Chicago: FAC-07 takes calls 07:00-23:00.
        async with running(tmp_path, redis_url, start_at=1795507200.0) as h:
            await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="1"))
            assert result.dials == [] and "outside_hours" in prompt_ids(result.prompts)
            assert h.records[-1]["reason"] == "outside_hours"
    run(go())


def test_spanish_and_star_repeats(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234", lang="2"),
                                  Recipient(MARIA, actions=["*", "1"], talk=5))
            heard = result.last_dial.recipient_prompts
            assert all("/es/" in p for p in heard if p.startswith("advancepay/"))
            assert prompt_ids(heard).count("prepaid_call_from") == 2
            assert h.record_for(MARIA)["outcome"] == "completed"
    run(go())


def test_silence_refuses_after_three_tries(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            result = await h.call(handset("3125551234"), Recipient(MARIA, actions=["5", None, HangUp(5)]))
            heard = prompt_ids(result.last_dial.recipient_prompts)
            assert heard.count("prepaid_call_from") == 3
            assert h.record_for(MARIA)["outcome"] == "refused"
            assert await h.available(account) == 500
    run(go())
