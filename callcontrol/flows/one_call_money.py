"""The money of one call paid by card (issue #12, `unfunded_calls = "offer_one_call"`).

One billing path: the card's authorization (the rated cost of the facility's longest call, no fee) is
credited to a ledger account of this call alone (facility `<facility>.1c.<call id>`, the called number),
the call's ordinary hold (`<call>:hold`) takes all of it, and the call meters and settles like any other.
Once the hold is resolved, the ledger's own record of it says what the call cost: the gateway captures
exactly that (or the authorization is voided by key when it cost nothing), the rest of the credit goes
back (`refund`) and the account is closed. The family's AdvancePay account is never touched.

Exactly once: the gateway's idempotency key is `oc-<call id>` and every ledger op id derives from it, a
capture of the same amount is a replay, and `void_by_key` also refuses a late authorization under the
key. A call being paid for is listed in `apc:onecall:open` from before the authorization until all of
that is done; whoever settles the call finishes it, and every controller's recovery loop finishes the
listed calls whose settlement is stored (a controller killed between authorization and connect, or
between hang-up and capture). Card data never reaches this module.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import structlog

from callcontrol import billing
from callcontrol.call_state import CallState
from callcontrol.flows.context import FlowContext
from ledger import UnknownAccount
from payments.gateway import GatewayError, PaymentError

log = structlog.get_logger("callcontrol.one_call")

ONE_CALL_KEY = "apc:onecall:{}"
OPEN_KEY = "apc:onecall:open"
SOURCE = "one-call-card"
KEEP_SECONDS = 90 * 24 * 3600        # the per-call payment record, for support


def offered(ctx: FlowContext, facility: Any) -> bool:
    """The facility offers one paid call and a card processor is configured (else: refused as before)."""
    return getattr(facility, "unfunded_calls", "deny") == "offer_one_call" and ctx.gateway is not None


def gateway_key(call_id: str) -> str:
    return f"oc-{call_id}"


def account_for(facility_id: str, number_e164: str, call_id: str) -> str:
    """The ledger account of this one call (derived: no lookup)."""
    return billing.account_for(f"{facility_id}.1c.{call_id}", number_e164)


async def begin(ctx: FlowContext, state: CallState) -> None:
    """List the call as being paid for, before the card is sent (Redis down: raises, nothing charged)."""
    key = ONE_CALL_KEY.format(state.call_id)
    await ctx.store.r.hset(key, mapping={"key": gateway_key(state.call_id), "account": state.account,
                                         "amount": str(state.pay_amount), "status": "authorizing"})
    await ctx.store.r.expire(key, KEEP_SECONDS)
    await ctx.store.r.zadd(OPEN_KEY, {state.call_id: ctx.clock.now()})


async def authorized(ctx: FlowContext, call_id: str, auth_id: str, last4: str) -> None:
    await ctx.store.r.hset(ONE_CALL_KEY.format(call_id),
                           mapping={"auth_id": auth_id, "last4": last4, "status": "authorized"})


async def fund(ctx: FlowContext, state: CallState, auth_id: str) -> None:
    """Credit the authorization to the call's account and take the call's hold on all of it."""
    op, acct, amount = partial(billing.op_one_call, state.call_id), state.account, state.pay_amount
    facility = f"{state.facility_id}.1c.{state.call_id}"
    await billing.retry(lambda: ctx.ledger.open_account(op("open"), facility, state.e164,
                                                        owner="one call"))
    await billing.retry(lambda: ctx.ledger.deposit(op("dep"), acct, amount, source=SOURCE,
                                                   reference=auth_id))
    lease = state.max_seconds + ctx.settings.ring_timeout + ctx.screening_margin + 60
    await billing.hold(ctx.ledger, state.call_id, acct, amount, lease_seconds=lease,
                       meta={"facility": state.facility_id, "inmate": state.inmate, "kind": "one_call"})
    await ctx.store.update(state.call_id, hold_amount=amount)
    state.hold_amount = amount


async def finish(ctx: FlowContext, call_id: str) -> bool:
    """Charge the card exactly what the settled call cost and release the rest; True once done. Does
    nothing (False) while the call is not settled, or while the gateway cannot answer (retried)."""
    info = {_s(k): _s(v) for k, v in (await ctx.store.r.hgetall(ONE_CALL_KEY.format(call_id))).items()}
    if not info or info.get("status") in ("done", "capture_refused"):
        await ctx.store.r.zrem(OPEN_KEY, call_id)
        return True
    state = await ctx.store.get(call_id)
    if state is not None and not state.settled:
        return False                     # the call still runs: its settlement finishes it
    if ctx.gateway is None:
        log.error("one_call_no_gateway", call_id=call_id)
        return False
    key, acct, op = info["key"], info["account"], partial(billing.op_one_call, call_id)
    hold = await ctx.ledger.hold_info(acct, call_id)
    if hold is not None and hold.status == "pending":
        # Taken after the call was settled (the caller left while the recipient paid): never used.
        with contextlib.suppress(*billing.HOLD_GONE):
            await ctx.ledger.void(op("void"), acct, call_id, reason="one_call_unused")
        hold = await ctx.ledger.hold_info(acct, call_id)
    cost = hold.captured if hold is not None else 0
    try:
        balance = await ctx.ledger.balance(acct)
    except UnknownAccount:
        balance = None
    if balance is not None and balance.posted > 0:
        await ctx.ledger.refund(op("rest"), acct, balance.posted, reason="one call: not used")
    if balance is not None and balance.state != "closed":
        await ctx.ledger.close_account(op("close"), acct, reason="one call over")
    status = "done"
    try:
        if cost > 0:
            await ctx.gateway.capture(info.get("auth_id", ""), cost)
        else:
            await ctx.gateway.void_by_key(key)
    except GatewayError as exc:
        log.warning("one_call_gateway_retry", call_id=call_id, error=type(exc).__name__)
        return False
    except PaymentError as exc:          # refused for good (authorization lapsed): operators see it
        log.error("one_call_capture_refused", call_id=call_id, cost=cost, error=type(exc).__name__)
        status = "capture_refused"
    await ctx.store.r.hset(ONE_CALL_KEY.format(call_id), mapping={"status": status, "charged": str(cost)})
    await ctx.store.r.zrem(OPEN_KEY, call_id)
    log.info("one_call_finished", call_id=call_id, charged=cost, last4=info.get("last4", ""))
    return True


async def finish_quietly(ctx: FlowContext, call_id: str) -> None:
    """`finish`, failures logged: the recovery loop tries again."""
    try:
        await finish(ctx, call_id)
    except Exception as exc:
        log.warning("one_call_finish_failed", call_id=call_id, error=type(exc).__name__)


async def finish_open(ctx: FlowContext) -> int:
    """Finish every listed call whose settlement is stored (recovery loop); returns how many."""
    done = 0
    for member in await ctx.store.r.zrange(OPEN_KEY, 0, -1):
        call_id = _s(member)
        if call_id in ctx.sessions:
            continue
        try:
            done += bool(await finish(ctx, call_id))
        except Exception as exc:
            log.warning("one_call_finish_failed", call_id=call_id, error=type(exc).__name__)
    return done


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
