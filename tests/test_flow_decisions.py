"""Pure call-flow decisions: every branch without sockets or servers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol import decisions as d
from callcontrol.decisions import Outcome, ScreenResult


@pytest.mark.parametrize(("code", "prompt"), [
    ("invalid", "number_invalid"), ("too_long", "number_invalid"), ("premium", "number_premium"),
    ("toll_free", "number_toll_free"), ("short_code", "number_short_code"),
    ("blocked_type", "number_blocked_facility"), ("something_new", "number_invalid"),
])
def test_number_refusal_prompts(code: str, prompt: str) -> None:
    denial = d.number_refusal(code)
    assert denial.prompt == prompt
    assert denial.outcome is Outcome.DENIED


def test_unfunded_denials_are_recorded_as_unfunded() -> None:
    assert d.NO_ACCOUNT.outcome is Outcome.UNFUNDED
    assert d.INSUFFICIENT_FUNDS.outcome is Outcome.UNFUNDED
    assert d.SERVICE_UNAVAILABLE.prompt == "service_unavailable"


@pytest.mark.parametrize(("key", "lang"), [("1", "en"), ("2", "es"), ("", "en"), (None, "en"), ("7", "en"),
                                           ("#", "en")])
def test_choose_language(key: str | None, lang: str) -> None:
    assert d.choose_language(("en", "es"), key) == lang


def test_choose_language_single_and_none() -> None:
    assert d.choose_language(("es",), "2") == "es"
    assert d.choose_language((), "1") == "en"


@pytest.mark.parametrize(("raw", "clean"), [("5551234", "5551234"), ("", None), (None, None),
                                            ("12a", None), ("1" * 15, "1" * 15), ("1" * 16, None)])
def test_clean_number(raw: str | None, clean: str | None) -> None:
    assert d.clean_number(raw) == clean


def test_pin_lock_threshold() -> None:
    assert not d.pin_locked(2, 3)
    assert d.pin_locked(3, 3)


def test_plan_hold_sizes_lease_and_warning() -> None:
    plan = d.plan_hold(900, 540, ring_timeout=30, screening_margin=60, warning_seconds=60)
    assert plan is not None
    assert (plan.seconds, plan.amount, plan.warning_seconds) == (900, 540, 60)
    assert plan.lease_seconds >= 900 + 30 + 60
    short = d.plan_hold(45, 6, ring_timeout=30, screening_margin=60, warning_seconds=60)
    assert short is not None and short.warning_seconds == 0
    assert d.plan_hold(0, 0, ring_timeout=30, screening_margin=60, warning_seconds=60) is None


def test_billed_seconds() -> None:
    assert d.billed_seconds(None, 100.0) == 0
    assert d.billed_seconds(100.0, 100.2) == 1
    assert d.billed_seconds(100.0, 160.0) == 60
    assert d.billed_seconds(100.0, 160.99) == 60


@given(st.floats(0, 10_000), st.floats(0, 10_000), st.integers(1, 120))
@settings(max_examples=200, deadline=None)
def test_increments_started_matches_due_times(accepted: float, later: float, inc: int) -> None:
    now = accepted + later
    k = d.increments_started(accepted, now, inc)
    assert k >= 1
    assert d.capture_due_at(accepted, k, inc) <= now + 1e-6
    assert d.capture_due_at(accepted, k + 1, inc) > now - 1e-6
    # What metering has captured by a hang-up at `now` is exactly what the billed seconds cost: never
    # an increment more (the settlement cannot charge below what was captured).
    billed = d.billed_seconds(accepted, now)
    assert k == -(-billed // inc)


@pytest.mark.parametrize("ended, captures",
                         [(0.2, 1), (59.9, 1), (60.0, 1), (60.99, 1), (61.0, 2), (121.5, 3)])
def test_a_call_ending_inside_an_increments_first_second_is_not_charged_for_it(ended: float,
                                                                               captures: int) -> None:
    due = [d.capture_due_at(1000.0, k, 60) for k in range(1, 5)]
    assert sum(1 for t in due if t <= 1000.0 + ended) == captures
    assert -(-d.billed_seconds(1000.0, 1000.0 + ended) // 60) == captures


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000))
@settings(max_examples=200, deadline=None)
def test_final_total_bounds(cost: int, captured: int, hold: int) -> None:
    total = d.final_total(cost, captured, hold)
    assert total >= captured
    if captured <= hold:
        assert total <= hold
        assert total == max(captured, min(cost, hold))


@pytest.mark.parametrize(("keys", "result"), [
    (["1"], ScreenResult.ACCEPTED), (["2"], ScreenResult.REFUSED), (["9"], ScreenResult.BLOCKED),
    ([None, None, None], ScreenResult.NO_INPUT), (["*", "*", "1"], ScreenResult.ACCEPTED),
    (["5", "7", "1"], ScreenResult.ACCEPTED), (["5", "7", "3"], ScreenResult.NO_INPUT),
    ([None, "*", "2"], ScreenResult.REFUSED), ([None, None, None, "1"], ScreenResult.NO_INPUT),
    (["*", "*", "*", "1"], ScreenResult.NO_INPUT),          # `*` uses a try: no endless replays
    ([], None), ([None], None), (["*", "5"], None),         # still open
])
def test_screen_verdict(keys: list[str | None], result: ScreenResult | None) -> None:
    assert d.screen_verdict(keys) is result


@pytest.mark.parametrize(("status", "screen", "outcome", "prompt"), [
    ("ANSWER", "accepted", Outcome.COMPLETED, "goodbye"),
    ("BUSY", "refused", Outcome.REFUSED, "call_refused"),
    ("BUSY", "blocked", Outcome.BLOCKED, "call_blocked_by_recipient"),
    ("BUSY", "", Outcome.BUSY, "line_busy"),
    ("NOANSWER", "", Outcome.NO_ANSWER, "call_not_answered"),
    ("CHANUNAVAIL", "", Outcome.UNAVAILABLE, "call_not_answered"),
    ("CONGESTION", None, Outcome.UNAVAILABLE, "call_not_answered"),
    ("ANSWER", "", Outcome.REFUSED, "call_refused"),
    ("BUSY", "no_input", Outcome.REFUSED, "call_refused"),
    ("CANCEL", "caller_gone", Outcome.FAILED, None),
    ("BUSY", "caller_gone", Outcome.FAILED, None),
    ("", "", Outcome.FAILED, "service_unavailable"),
])
def test_dial_verdict(status: str, screen: str, outcome: Outcome, prompt: str) -> None:
    verdict = d.dial_verdict(status, screen)
    assert verdict.outcome is outcome
    assert verdict.prompt == prompt


def test_dial_verdict_funds() -> None:
    assert d.dial_verdict("ANSWER", "accepted", limit_reached=True, capped_by_funds=True).prompt == \
        "call_ended_funds"
    assert d.dial_verdict("ANSWER", "accepted", limit_reached=True).prompt == "goodbye"
    assert d.dial_verdict("ANSWER", "accepted", funds_cut=True).reason == "funds"


def test_dial_args() -> None:
    args = d.dial_args("Local/{number}@apc-outbound", "+15551234567", 30, "c1", 900, 60)
    assert args == "Local/15551234567@apc-outbound,30,U(screen-sub^c1)L(900000:60000)"
    assert d.dial_args("SIP/{number}", "+44", 20, "c2", 45, 0).endswith("L(45000)")
