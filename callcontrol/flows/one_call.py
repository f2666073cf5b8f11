"""The recipient of an unfunded call (`unfunded_calls = "offer_one_call"`): pay for this one call by card.

Run by the screening AGI when the call has no hold. The recipient hears who is calling from where, the
recording notice and the per-minute rate, then: 1 pay by card, 2 refuse, 9 block, 3 how to open an
AdvancePay account, * repeat. Paying keys card, expiry, CVV and ZIP (sensitive GET DATA: the digits
never reach a log, Redis or SQL; the gateway protocol has no address check yet, so the ZIP is checked for
form and dropped). The authorization is the rated cost of the facility's longest call with no fee;
approved, it funds the call's hold (flows/one_call_money.py) and the call is accepted like any other.
Declined, failed or abandoned: nothing is charged (the authorization, if any, is released).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from callcontrol.asterisk.agi import AGIError, AGIHangup
from callcontrol.call_state import CallState
from callcontrol.decisions import ScreenResult
from callcontrol.flows import one_call_money as money
from callcontrol.flows import screen as sc
from callcontrol.flows.context import FlowContext
from callcontrol.flows.ports import Channel
from payments.cards import CARD_MAX_DIGITS, card_number_ok, cvv_ok, expiry_problem
from payments.gateway import GatewayError, PaymentError

log = structlog.get_logger("callcontrol.one_call")

CARD_TIMEOUT_MS = 15000
SHORT_TIMEOUT_MS = 8000
FIELD_TRIES = 3
MAX_ROUNDS = 6                       # announcement plays, repeats and account info included


def announcement(ctx: FlowContext, state: CallState) -> list[str]:
    lang, sp = state.lang, ctx.speech
    files = [sp.prompt("prepaid_call_from", lang)]
    if state.name_file:
        files.append(state.name_file)
    files += sp.prompts(["an_inmate_at", *sp.facility_name(state.facility_id, lang)], lang)
    files.append(sp.prompt("privileged_notice_recipient" if state.privileged else "monitoring_notice", lang))
    rate = ctx.quote_for(state).per_minute_with_taxes
    files += sp.prompts(["one_call_no_account", "rate_is", *sp.say_rate(rate, lang)], lang)
    files += sp.prompts(["one_call_menu", "press_repeat"], lang)
    return files


async def screen_unfunded(ctx: FlowContext, ch: Channel, state: CallState) -> None:
    bound = log.bind(call_id=state.call_id)
    result: ScreenResult | None = None
    try:
        files = announcement(ctx, state)
        tries = 0
        for _ in range(MAX_ROUNDS):
            key = await sc._ask(ch, files)
            if key in ("1", "2", "9"):
                break
            if key == "3":
                await ch.stream_file(ctx.speech.prompt("one_call_open_account", state.lang), "")
                continue
            if key == "*":
                continue
            tries += 1
            if tries >= ctx.screen_tries or await sc._caller_gone(ctx, state.call_id):
                break
            if key:
                await ch.stream_file(ctx.speech.prompt("invalid_choice", state.lang), "")
        else:
            key = ""
        if key == "1":
            result = await _pay(ctx, ch, state, bound)
        elif key == "9":
            await sc._block(ctx, ch, state)
            result = ScreenResult.BLOCKED
        else:
            result = ScreenResult.REFUSED if key == "2" else ScreenResult.NO_INPUT
            if await sc._caller_gone(ctx, state.call_id):
                result = ScreenResult.CALLER_GONE
            await sc._refuse(ctx, ch, state, result)
    except AGIHangup:
        if result is None or (result is ScreenResult.ACCEPTED and not state.accepted_at):
            gone = await sc._caller_gone(ctx, state.call_id)
            result = ScreenResult.CALLER_GONE if gone else ScreenResult.HANGUP
            await ctx.store.update(state.call_id, screen_result=str(result))
    except AGIError as exc:
        bound.warning("screen_agi_error", error=str(exc)[:200])
        if result is None:
            await ctx.store.update(state.call_id, screen_result=str(ScreenResult.REFUSED))
    finally:
        if result is not ScreenResult.ACCEPTED:
            # Settled already (the caller left while the recipient paid)? Then release it now.
            await money.finish_quietly(ctx, state.call_id)
    bound.info("screened_one_call", result=str(result))


async def _field(ctx: FlowContext, ch: Channel, state: CallState, prompt: str, timeout_ms: int,
                 max_digits: int, ok: Callable[[str], bool], complaint: str) -> str | None:
    for _ in range(FIELD_TRIES):
        raw = await ch.get_data(ctx.speech.prompt(prompt, state.lang), timeout_ms, max_digits, sensitive=True)
        if raw and ok(raw):
            return raw
        await ch.stream_file(ctx.speech.prompt(complaint, state.lang), "")
    return None


async def _failed(ctx: FlowContext, ch: Channel, state: CallState, prompt: str) -> ScreenResult:
    await ctx.store.update(state.call_id, screen_result=str(ScreenResult.REFUSED))
    await sc._reject(ch)
    await ch.stream_file(ctx.speech.prompt(prompt, state.lang), "")
    return ScreenResult.REFUSED


async def _card_entry(ctx: FlowContext, ch: Channel, state: CallState) -> tuple[str, str, str] | None:
    """Card, expiry, CVV and ZIP, each checked (3 tries); None when one never comes right."""
    now = datetime.fromtimestamp(ctx.clock.now(), tz=UTC)
    card = await _field(ctx, ch, state, "deposit_enter_card", CARD_TIMEOUT_MS, CARD_MAX_DIGITS,
                        card_number_ok, "deposit_card_invalid")
    if card is None:
        return None
    expiry = await _field(ctx, ch, state, "deposit_enter_expiry", SHORT_TIMEOUT_MS, 4,
                          lambda v: expiry_problem(v, now) is None, "deposit_card_expired")
    if expiry is None:
        return None
    cvv = await _field(ctx, ch, state, "deposit_enter_cvv", SHORT_TIMEOUT_MS, 4,
                       lambda v: cvv_ok(v, card), "invalid_choice")
    if cvv is None:
        return None
    zip_code = await _field(ctx, ch, state, "one_call_enter_zip", SHORT_TIMEOUT_MS, 5,
                            lambda v: len(v) == 5 and v.isdigit(), "invalid_choice")
    return None if zip_code is None else (card, expiry, cvv)


async def _pay(ctx: FlowContext, ch: Channel, state: CallState, bound: Any) -> ScreenResult:
    entry = await _card_entry(ctx, ch, state)
    if entry is None:
        bound.info("one_call_entry_failed")
        return await _failed(ctx, ch, state, "one_call_not_paid")
    if await sc._caller_gone(ctx, state.call_id):
        await sc._refuse(ctx, ch, state, ScreenResult.CALLER_GONE)
        return ScreenResult.CALLER_GONE
    assert ctx.gateway is not None
    key = money.gateway_key(state.call_id)
    await money.begin(ctx, state)                 # Redis down: raises before any card is sent
    try:
        auth = await ctx.gateway.authorize(key, *entry, state.pay_amount)
    except GatewayError:
        bound.warning("one_call_gateway_failed")  # outcome unknown: finish() voids by key
        return await _failed(ctx, ch, state, "one_call_not_paid")
    except PaymentError as exc:
        bound.warning("one_call_gateway_refused", error=type(exc).__name__)
        return await _failed(ctx, ch, state, "one_call_not_paid")
    finally:
        del entry
    if not auth.approved:
        bound.info("one_call_declined", reason=auth.decline_reason, last4=auth.last4)
        return await _failed(ctx, ch, state, "deposit_declined")
    await money.authorized(ctx, state.call_id, auth.auth_id, auth.last4)
    try:
        await money.fund(ctx, state, auth.auth_id)
    except Exception as exc:
        bound.error("one_call_not_funded", error=type(exc).__name__)
        return await _failed(ctx, ch, state, "one_call_not_paid")
    bound.info("one_call_paid", amount=state.pay_amount, last4=auth.last4)
    return await sc._accept(ctx, ch, state)
