"""Settlement: the one place a call's hold is resolved and its record written, whoever gets there first.

Called by the inmate flow when Dial returns, by the dialplan's hangup handler (`agi://…/hangup?call_id=`,
on any instance), by the AMI watchdog and by start-up recovery. Every step is idempotent: the end time is
first-writer-wins in call state, so every instance computes the same total, and the ledger op ids derive
from the call id (`<call>:settle`, `<call>:void`, `<call>:record`), so a second settlement replays.

A settlement that fails (Redis down) keeps the end it was given in `ctx.unsettled`, in process memory,
and `retry_unsettled` settles it with that end once Redis answers: the family pays for the time Asterisk
reported, not for the outage. If this process dies too, that end is lost: another instance adopts the
call (controller.recover) and settles it at the increments captured, or on its lease.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import structlog

from callcontrol import billing, decisions
from callcontrol.call_state import CallState
from callcontrol.decisions import DialVerdict, Outcome
from callcontrol.flows.context import FlowContext, iso
from callcontrol.flows.ports import Channel
from ledger import IdConflict, LedgerUnavailable

log = structlog.get_logger("callcontrol.settle")

CALL_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")


def verdict_from_state(state: CallState) -> DialVerdict:
    """The outcome when Dial's own result is not known (hangup handler, recovery)."""
    screen = state.screen_result
    if screen:
        return decisions.dial_verdict("ANSWER", screen, funds_cut=state.funds_cut)
    if state.dial_at:
        return DialVerdict(Outcome.FAILED, None, "ended_unscreened")
    return DialVerdict(Outcome.FAILED, None, state.end_reason or "not_dialled")


@dataclass(frozen=True)
class Ended:
    """The end of a call as first learnt, kept until its settlement is stored."""

    at: float
    reason: str
    dial_status: str | None = None
    dial_ended: float | None = None
    void_account: str = ""        # a hold no call will use (the call never dialled): void it


async def record(ctx: FlowContext, call_id: str, fields: dict[str, Any], *, strict: bool = False) -> None:
    """Write one attempt's call record (idempotent by call id); a failure is logged, and raised when
    `strict` and the ledger was unreachable (a settlement is not done until its record is written)."""
    base: dict[str, Any] = {
        "call_id": call_id, "account_id": "", "facility_id": "", "inmate_id": "", "dialled": "",
        "number_e164": "", "call_class": "", "outcome": "", "reason": "", "started_at": "",
        "answered_at": "", "accepted_at": "", "ended_at": "", "billed_seconds": 0, "amount": 0,
        "recorded": False, "privileged": False,
    }
    base.update(fields)
    try:
        await billing.record(ctx.ledger, call_id, base)
        if ctx.on_record is not None:
            ctx.on_record(base)
    except IdConflict:
        return      # recorded already by another path with its own view of the outcome
    except Exception as exc:
        if strict and isinstance(exc, LedgerUnavailable):
            raise
        log.error("call_record_failed", call_id=call_id, error=type(exc).__name__, detail=str(exc)[:200])


async def _resolve_hold(ctx: FlowContext, state: CallState, ended: float) -> tuple[int, int]:
    """Settle the exact cost of the accepted seconds or void an unaccepted hold: (billed s, cents)."""
    if not state.accepted_at or state.accepted_at > ended:
        await billing.void_unaccepted(ctx.ledger, state.call_id, state.account)
        return 0, 0
    billed = decisions.billed_seconds(state.accepted_at, ended)
    cost = int(ctx.quote_for(state).cost(billed))
    total = decisions.final_total(cost, state.captured, state.hold_amount)
    try:
        held = await billing.settle(ctx.ledger, state.call_id, state.account, total)
        return billed, held.captured
    except billing.SETTLE_STALE:
        pass
    # Our view of the captures was stale (another instance metered), or the hold is already resolved:
    # the ledger's own record of the hold decides.
    info = await ctx.ledger.hold_info(state.account, state.call_id)
    if info is not None and info.status == "pending":
        total = decisions.final_total(cost, info.captured, info.amount)
        held = await billing.settle(ctx.ledger, state.call_id, state.account, total, again=True)
        return billed, held.captured
    return billed, int(info.captured if info is not None else total)


def dial_verdict_for(state: CallState, status: str | None, ended: float) -> DialVerdict:
    """The outcome of a Dial that returned `status` at `ended`, given the call's state."""
    limit_reached = bool(state.accepted_at) and ended - state.accepted_at >= state.max_seconds - 1
    return decisions.dial_verdict(status, state.screen_result, limit_reached=limit_reached,
                                  capped_by_funds=state.capped_by in ("funds", "balance"),
                                  funds_cut=state.funds_cut)


async def settle_call(ctx: FlowContext, call_id: str, ended_at: float, reason: str, *,
                      verdict: DialVerdict | None = None, dial_status: str | None = None,
                      dial_ended: float | None = None) -> tuple[CallState, DialVerdict] | None:
    """Resolve the call's hold and write its record, once. Returns (final state, verdict) or None when
    the call is unknown. Raises only when the ledger cannot be reached: the end stays in
    `ctx.unsettled` for `retry_unsettled` (and the call in the live index for the hangup handler,
    adoption, or the hold's lease). At most SETTLE_CONCURRENCY settlements run at once (all calls
    ending together take turns); metering stops before the wait.

    With `dial_status` (the inmate flow, Dial returned at `dial_ended`) the verdict is taken from the
    state the end was fixed on, which saves a separate read."""
    ctx.meter.stop(call_id)      # at once: no increment is captured while the settlement waits its turn
    first = ctx.unsettled.get(call_id)
    if first is not None:        # an earlier attempt failed: the end learnt then stands
        ended_at, reason = first.at, first.reason
        dial_status, dial_ended = dial_status or first.dial_status, dial_ended or first.dial_ended
    try:
        result = await _settle(ctx, call_id, ended_at, reason, verdict, dial_status, dial_ended)
    except BaseException:
        ctx.unsettled[call_id] = Ended(ended_at, reason, dial_status, dial_ended)
        raise
    ctx.unsettled.pop(call_id, None)
    return result


async def _settle(ctx: FlowContext, call_id: str, ended_at: float, reason: str, verdict: DialVerdict | None,
                  dial_status: str | None, dial_ended: float | None) -> tuple[CallState, DialVerdict] | None:
    try:
        # The call's lock before a slot, so that no slot is held waiting for a lock.
        async with ctx.lock(call_id), ctx.settling:
            # One round trip: fixes the end (first writer wins; a no-op on a settled call) and reads
            # the state as it stands.
            state = await ctx.store.finish(call_id, ended_at, reason)
            if state is None:
                return None
            if verdict is None and dial_status is not None:
                verdict = dial_verdict_for(state, dial_status, ended_at if dial_ended is None else dial_ended)
            if state.settled:
                return state, verdict or verdict_from_state(state)
            verdict = verdict or verdict_from_state(state)
            billed, amount = 0, 0
            if state.account and state.hold_amount:
                billed, amount = await _resolve_hold(ctx, state, state.ended_at)
            await record(ctx, call_id, {
                "account_id": state.account, "facility_id": state.facility_id, "inmate_id": state.inmate,
                "dialled": state.dialled, "number_e164": state.e164, "call_class": state.call_class,
                "outcome": str(verdict.outcome), "reason": verdict.reason,
                "started_at": iso(state.created_at), "answered_at": iso(state.answered_at),
                "accepted_at": iso(state.accepted_at), "ended_at": iso(state.ended_at),
                "billed_seconds": billed, "amount": amount, "recorded": state.recorded,
                "privileged": state.privileged,
            }, strict=True)
            await ctx.store.mark_settled(call_id, amount, str(verdict.outcome))
            state.settled, state.settled_total, state.outcome = True, amount, str(verdict.outcome)
            log.info("call_settled", call_id=call_id, outcome=str(verdict.outcome), billed_seconds=billed,
                     amount=amount, reason=reason)
            for channel, cid in list(ctx.orphans.items()):
                if cid == call_id:
                    del ctx.orphans[channel]
            ctx.forget_quote(state)
    finally:
        ctx.release_lock(call_id)    # once released (inside the block it was held, and never dropped)
    if state.pay_amount:             # a call paid by card: capture its exact cost, release the rest
        from callcontrol.flows.one_call_money import finish_quietly
        await finish_quietly(ctx, call_id)
    return state, verdict


async def release_unused(ctx: FlowContext, call_id: str, account: str) -> None:
    """Void the hold of a call that will not dial (or whose hold's outcome is unknown); while Redis
    cannot answer, `retry_unsettled` voids it once it does."""
    try:
        await billing.void_unused(ctx.ledger, call_id, account)
    except Exception as exc:
        log.warning("void_failed", call_id=call_id, error=type(exc).__name__)
        ctx.unsettled.setdefault(call_id, Ended(ctx.clock.now(), "not_dialled", void_account=account))


async def _retry(ctx: FlowContext, call_id: str, end: Ended) -> None:
    if end.void_account:
        await billing.void_unused(ctx.ledger, call_id, end.void_account)
        ctx.unsettled.pop(call_id, None)
        return
    await settle_call(ctx, call_id, end.at, end.reason, dial_status=end.dial_status,
                      dial_ended=end.dial_ended)


async def retry_unsettled(ctx: FlowContext) -> int:
    """Settle the calls whose settlement failed, each at the end learnt then, and void the holds no call
    will use; returns how many were done. A call whose inmate session still runs is left to it."""
    due = [(cid, end) for cid, end in ctx.unsettled.items() if cid not in ctx.sessions]
    results = await asyncio.gather(*(_retry(ctx, cid, end) for cid, end in due), return_exceptions=True)
    return sum(1 for r in results if not isinstance(r, BaseException))


async def hangup_route(ctx: FlowContext, ch: Channel) -> None:
    """`agi://…/hangup?call_id=` from the dialplan's hangup handler: settle the call if nobody has.

    The channel is already dead; no commands are sent. If this process still runs the call's inmate
    session, that session settles it; wait for it rather than race it.
    """
    call_id = ch.query.get("call_id") or (ch.args[0] if ch.args else "")
    if not call_id:
        # A handler without the id in its URL: the channel variable is still readable on a dead
        # channel (GET VARIABLE answers 200 after a hang-up).
        try:
            call_id = await ch.get_variable("CALL_ID") or ""
        except Exception:
            call_id = ""
    if not CALL_ID_RE.fullmatch(call_id or ""):
        log.info("hangup_without_call_id", channel=ch.channel_name)
        return
    done = ctx.sessions.get(call_id)
    if done is not None:
        try:
            await asyncio.wait_for(done.wait(), 30.0)
        except TimeoutError:
            log.warning("hangup_session_still_running", call_id=call_id)
    try:
        await settle_call(ctx, call_id, ctx.clock.now(), "hangup_handler")
    except Exception as exc:
        log.error("hangup_settle_failed", call_id=call_id, error=type(exc).__name__)
