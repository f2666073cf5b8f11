"""The recipient side: Dial's U(screen-sub^<call_id>) Gosub runs `agi://…/screen?call_id=` (or
agi_arg_1 = call id) on the called channel after it answers and before the bridge.

The call is found by its id in Redis call state, so this AGI may land on any controller instance. The
recipient hears who is calling, from where, the recording (or privileged) notice, the rate and their
balance, then presses 1 (accept), 2 (refuse) or 9 (block this facility); `*` repeats. Three tries
(a repeat is one); silence or a hang-up refuses. If the inmate hangs up meanwhile, the controller hangs
up this leg (AMI) and the record says the caller left. Acceptance is the billing start: stored once,
after the confirmation prompt and just before the bridge, and metering begins.
"""

from __future__ import annotations

import structlog

from callcontrol import billing, decisions
from callcontrol.asterisk.agi import AGIError, AGIHangup, fits_one_app
from callcontrol.call_state import CallState
from callcontrol.decisions import ScreenAction, ScreenResult
from callcontrol.flows.context import FlowContext
from callcontrol.flows.hangup import CALL_ID_RE
from callcontrol.flows.ports import Channel
from callcontrol.metering import MeteredCall
from rating import Quote

log = structlog.get_logger("callcontrol.screen")

KEYS = "0123456789*#"
WAIT_MS = 5000


def announcement(ctx: FlowContext, state: CallState, quote: Quote) -> list[str]:
    """STREAM FILE names of the full screening message, in order (the recorded name among them)."""
    lang, sp = state.lang, ctx.speech
    ids_before = ["prepaid_call_from"]
    files = [sp.prompt(i, lang) for i in ids_before]
    if state.name_file:
        files.append(state.name_file)
    files += sp.prompts(["an_inmate_at", *sp.facility_name(state.facility_id, lang)], lang)
    files.append(sp.prompt("privileged_notice_recipient" if state.privileged else "monitoring_notice", lang))
    files += sp.prompts(["rate_is", *sp.say_rate(quote.per_minute_with_taxes, lang)], lang)
    files += sp.prompts(["balance_is", *sp.say_money(max(0, state.available), lang)], lang)
    files += sp.prompts(["press_accept_refuse_block", "press_repeat"], lang)
    return files


async def _ask(ch: Channel, files: list[str]) -> str:
    """Play the message, stopping at the first key; then wait a moment for one. "" is silence.

    One Read() plays every file in two round trips (it waits 50 ms between files for a key); a
    recorded-name path that cannot go in an application argument falls back to a STREAM FILE each.
    A hang-up raises AGIHangup (Read itself answers 0 and says so only in READSTATUS).
    """
    if fits_one_app(files):
        status, key = await ch.read("SCREEN_KEY", files, 1, WAIT_MS / 1000)
        return key or ("#" if status == "OK" else "")    # OK with nothing: '#' ended the input
    for name in files:
        key = await ch.stream_file(name, KEYS)
        if key:
            return key
    return await ch.wait_for_digit(WAIT_MS)


async def _caller_gone(ctx: FlowContext, call_id: str) -> bool:
    """Has the inmate hung up? The controller fixes the call's end as soon as AMI reports it."""
    state = await ctx.store.get(call_id)
    return state is None or bool(state.ended_at)


async def screen(ctx: FlowContext, ch: Channel) -> None:
    call_id = ch.query.get("call_id") or (ch.args[0] if ch.args else "")
    known = CALL_ID_RE.fullmatch(call_id or "")
    state = await ctx.store.answered(call_id, ctx.clock.now()) if known else None
    if state is None or state.settled or state.ended_at:
        # Unknown or finished call: never connect what we cannot bill.
        log.warning("screen_unknown_call", call_id=call_id, channel=ch.channel_name)
        await _reject(ch)
        return
    if state.pay_amount and not state.hold_amount:     # unfunded: the recipient may pay this call
        from callcontrol.flows.one_call import screen_unfunded
        await screen_unfunded(ctx, ch, state)
        return
    bound = log.bind(call_id=call_id)
    result: ScreenResult | None = None
    try:
        files = announcement(ctx, state, ctx.quote_for(state))
        keys: list[str | None] = []
        while result is None:
            key = await _ask(ch, files)
            keys.append(key)
            result = decisions.screen_verdict(keys, ctx.screen_tries)
            if result is None and await _caller_gone(ctx, call_id):
                result = ScreenResult.CALLER_GONE
            elif result is None and decisions.screen_action(key) is ScreenAction.INVALID:
                await ch.stream_file(ctx.speech.prompt("invalid_choice", state.lang), "")
        if result is ScreenResult.ACCEPTED:
            result = await _accept(ctx, ch, state)
        elif result is ScreenResult.BLOCKED:
            await _block(ctx, ch, state)
        else:
            await _refuse(ctx, ch, state, result)
    except AGIHangup:
        # Whoever hung up, nothing was connected unless the acceptance was stored (a recipient who hangs
        # up during the confirmation prompt after pressing 1 was never connected). The recipient's leg is
        # also hung up when the inmate leaves during screening: then the inmate is the one who left.
        if result is None or (result is ScreenResult.ACCEPTED and not state.accepted_at):
            result = ScreenResult.CALLER_GONE if await _caller_gone(ctx, call_id) else ScreenResult.HANGUP
            await ctx.store.update(call_id, screen_result=str(result))
        bound.info("screen_hangup", result=str(result))
    except AGIError as exc:
        bound.warning("screen_agi_error", error=str(exc)[:200])
        if result is None:
            await ctx.store.update(call_id, screen_result=str(ScreenResult.REFUSED))
    bound.info("screened", result=str(result))


async def _refuse(ctx: FlowContext, ch: Channel, state: CallState, result: ScreenResult) -> None:
    await ctx.store.update(state.call_id, screen_result=str(result))
    await _reject(ch)
    if result is not ScreenResult.CALLER_GONE:
        prompt = "no_input_refused" if result is ScreenResult.NO_INPUT else "call_refused_recipient"
        await ch.stream_file(ctx.speech.prompt(prompt, state.lang), "")


async def _reject(ch: Channel) -> None:
    try:
        await ch.set_variable("SCREEN_RESULT", "REJECTED")
        await ch.set_variable("GOSUB_RESULT", "BUSY")
    except (AGIHangup, AGIError):
        pass


async def _accept(ctx: FlowContext, ch: Channel, state: CallState) -> ScreenResult:
    """Billing starts when the bridge is at hand: after the confirmation prompt (a recipient who hangs
    up during it, or a prompt that fails, is never billed), and only if the caller is still there --
    asked before the prompt too, so a late 1 is never told "connecting"."""
    if await _caller_gone(ctx, state.call_id):
        await _refuse(ctx, ch, state, ScreenResult.CALLER_GONE)
        return ScreenResult.CALLER_GONE
    await ch.stream_file(ctx.speech.prompt("call_accepted", state.lang), "")
    accepted_at = await ctx.store.accept(state.call_id, ctx.clock.now())
    if accepted_at is None:       # the caller hung up meanwhile: nothing to connect, nothing to bill
        log.info("screen_caller_gone", call_id=state.call_id)
        await _refuse(ctx, ch, state, ScreenResult.CALLER_GONE)
        return ScreenResult.CALLER_GONE
    state.accepted_at = accepted_at
    quote = ctx.quote_for(state)
    ctx.meter.start(MeteredCall(state.call_id, state.account, accepted_at, state.increment,
                                quote.increment_charge, state.hold_amount))
    await ch.set_variable("SCREEN_RESULT", "ACCEPTED")     # the last command: Dial bridges next
    return ScreenResult.ACCEPTED


async def _block(ctx: FlowContext, ch: Channel, state: CallState) -> None:
    try:
        await billing.block(ctx.ledger, state.call_id, state.facility_id, state.e164)
    except Exception as exc:
        log.error("block_not_stored", call_id=state.call_id, error=type(exc).__name__)
    await ctx.store.update(state.call_id, screen_result=str(ScreenResult.BLOCKED))
    await _reject(ch)
    await ch.stream_file(ctx.speech.prompt("facility_blocked_confirm", state.lang), "")
