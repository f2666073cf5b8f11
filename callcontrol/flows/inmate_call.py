"""The inmate side: `agi://…/inmate-call?facility=FAC-07` (agi_arg_1 = station extension, agi_arg_2 =
station id). Identify the inmate, screen and rate the number, hold the funds once, Dial with screening
and a hard time limit, then settle and tell the inmate how it went.

Fail closed: if Redis (ledger, call state) or rating cannot answer, no call connects, the inmate hears
service_unavailable and nothing is charged.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from callcontrol import billing, decisions
from callcontrol.asterisk.agi import AGIError, AGIHangup, fits_one_app
from callcontrol.call_state import CallState
from callcontrol.decisions import Denial, DialVerdict, Outcome
from callcontrol.flows import one_call_money, request2call
from callcontrol.flows.context import FlowContext, iso, new_call_id
from callcontrol.flows.hangup import record, release_unused, settle_call
from callcontrol.flows.ports import Channel
from callcontrol.policy import Inmate
from ledger import Balance, UnknownAccount
from rating import Facility, NumberRefused

log = structlog.get_logger("callcontrol.inmate_call")

PIN_TIMEOUT_MS = 8000
PIN_MAX_DIGITS = 16
NUMBER_TIMEOUT_MS = 10000
NUMBER_MAX_DIGITS = 15
LANGUAGE_WAIT_MS = 3000
HOLD_CLASS = "advancepay-hold"      # asterisk_conf/musiconhold.conf: the please_hold prompt, repeated


class Denied(Exception):
    """End the attempt before dialling with this denial (prompt + record)."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.reason)
        self.denial = denial


@dataclass
class Attempt:
    """What the flow learnt so far, for the record whatever happens."""

    call_id: str
    facility_id: str
    station: str
    started_at: float
    lang: str = "en"
    inmate: str = ""
    dialled: str = ""
    e164: str = ""
    call_class: str = ""
    account: str = ""
    privileged: bool = False
    held: bool = False
    request_id: str = ""             # the Request2Call request this call answers, if any

    def record_fields(self, outcome: Outcome, reason: str, ended_at: float) -> dict[str, Any]:
        return {
            "account_id": self.account, "facility_id": decisions.record_facility(self.facility_id),
            "inmate_id": self.inmate, "dialled": self.dialled, "number_e164": self.e164,
            "call_class": self.call_class, "outcome": str(outcome), "reason": reason,
            "started_at": iso(self.started_at), "ended_at": iso(ended_at), "privileged": self.privileged,
        }


async def _play(ctx: FlowContext, ch: Channel, lang: str, *ids: str) -> None:
    """Play prompt ids in order, uninterrupted: one STREAM FILE, or one Playback(a&b) for several."""
    files = ctx.speech.prompts(ids, lang)
    if len(files) == 1 or not fits_one_app(files):
        for name in files:
            await ch.stream_file(name, "")
    else:
        await ch.playback(*files)


async def _language(ctx: FlowContext, ch: Channel, languages: tuple[str, ...]) -> str:
    if len(languages) <= 1:
        return languages[0] if languages else "en"
    key = await ch.stream_file(ctx.speech.prompt("choose_language", languages[0]), "12")
    if not key:
        key = await ch.wait_for_digit(LANGUAGE_WAIT_MS)
    return decisions.choose_language(languages, key)


async def _identify(ctx: FlowContext, ch: Channel, att: Attempt) -> Inmate:
    """PIN entry with a lockout shared by all calls and instances (counter in Redis)."""
    fac = ctx.policy.facility(att.facility_id)
    if fac is None:
        raise Denied(decisions.UNKNOWN_FACILITY)
    for _ in range(ctx.pin_tries):
        entry = await ch.get_data(ctx.speech.prompt("enter_pin", att.lang), PIN_TIMEOUT_MS, PIN_MAX_DIGITS,
                                  sensitive=True)
        split = ctx.policy.split_entry(att.facility_id, entry or "")
        who = split[0] if split else f"station-{att.station or 'unknown'}"
        failures = await ctx.store.pin_failures(att.facility_id, who)
        if decisions.pin_locked(failures, fac.pin_max_failures):
            raise Denied(decisions.PIN_LOCKED)
        inmate = None
        if split is not None:
            number, passcode = split
            if ctx.policy.cached_pin_ok(att.facility_id, number, passcode):
                inmate = ctx.policy.verify_pin(att.facility_id, number, passcode)
            else:   # the KDF is deliberately slow: keep it off the event loop
                inmate = await asyncio.to_thread(ctx.policy.verify_pin, att.facility_id, number, passcode)
        if inmate is not None:
            if failures:
                await ctx.store.clear_pin_failures(att.facility_id, who)
            return inmate
        failures = await ctx.store.add_pin_failure(att.facility_id, who, fac.pin_failure_window_seconds)
        log.info("pin_failed", call_id=att.call_id, facility_id=att.facility_id, failures=failures)
        if decisions.pin_locked(failures, fac.pin_max_failures):
            raise Denied(decisions.PIN_LOCKED)
        await _play(ctx, ch, att.lang, "pin_invalid")
    raise Denied(decisions.PIN_INVALID)


async def inmate_call(ctx: FlowContext, ch: Channel) -> None:
    now = ctx.clock.now()
    facility_id = ch.query.get("facility") or ""
    station = ch.args[1] if len(ch.args) > 1 else (ch.args[0] if ch.args else "")
    att = Attempt(call_id=new_call_id(now), facility_id=facility_id, station=station, started_at=now)
    bound = log.bind(call_id=att.call_id, facility_id=facility_id, station=station)
    done = asyncio.Event()
    ctx.sessions[att.call_id] = done
    try:
        await _run(ctx, ch, att, bound)
    finally:
        done.set()
        ctx.sessions.pop(att.call_id, None)


async def _deny(ctx: FlowContext, ch: Channel, att: Attempt, denial: Denial) -> None:
    await record(ctx, att.call_id, att.record_fields(denial.outcome, denial.reason, ctx.clock.now()))
    if denial in (decisions.NO_ACCOUNT, decisions.INSUFFICIENT_FUNDS) and ctx.unfunded_notice and att.e164:
        _notify_unfunded(ctx, att)
    try:
        await _play(ctx, ch, att.lang, denial.prompt, "goodbye")
        await ch.hangup()
    except (AGIHangup, AGIError):
        pass


def _notify_unfunded(ctx: FlowContext, att: Attempt) -> None:
    """Fire and forget: the notice is scheduled, never awaited, and cannot fail the call."""
    try:
        facility = ctx.catalog.facility(att.facility_id)
        assert ctx.unfunded_notice is not None
        ctx.unfunded_notice(att.facility_id, att.e164, ctx.clock.now(), privileged=att.privileged,
                            facility_name=str(getattr(facility, "name", "") or att.facility_id),
                            language=att.lang if att.lang in ("en", "es") else "en",
                            time_zone=str(getattr(facility, "tz", "UTC")))
    except Exception as exc:
        log.warning("unfunded_notice_not_scheduled", error=type(exc).__name__)


async def _run(ctx: FlowContext, ch: Channel, att: Attempt, bound: Any) -> None:
    try:
        if not att.facility_id:
            att.facility_id = await ch.get_variable("FACILITY_ID") or ""
        await ch.answer()
        try:
            facility = ctx.catalog.facility(att.facility_id)
        except Exception as exc:
            bound.warning("unknown_facility", error=type(exc).__name__)
            raise Denied(decisions.UNKNOWN_FACILITY) from None
        languages = tuple(facility.languages) or ("en",)
        att.lang = languages[0]
        await _play(ctx, ch, att.lang, "welcome")
        att.lang = await _language(ctx, ch, languages)
        at = datetime.fromtimestamp(ctx.clock.now(), tz=UTC)
        if not facility.is_open(at):
            raise Denied(decisions.OUTSIDE_HOURS)
        inmate = await _identify(ctx, ch, att)
        att.inmate = f"{inmate.number}"
        if inmate.language and inmate.language in languages and len(languages) == 1:
            att.lang = inmate.language
        chosen = await request2call.offer(ctx, ch, att.lang, att.facility_id, inmate)
        preset = None
        if chosen is not None:
            att.request_id, preset = chosen.request_id, request2call.dial_digits(chosen.number_e164)
            bound.info("call_request_chosen", request_id=chosen.request_id)
        await _dial_number(ctx, ch, att, inmate, facility, bound, preset=preset)
    except Denied as denied:
        bound.info("call_denied", reason=denied.denial.reason)
        await _deny(ctx, ch, att, denied.denial)
    except AGIHangup:
        if att.held:
            raise
        bound.info("caller_hung_up_before_dial")
        await record(ctx, att.call_id, att.record_fields(Outcome.FAILED, "caller_hangup", ctx.clock.now()))
    except Exception as exc:
        if isinstance(exc, AGIError) or not billing.service_failure(exc):
            if att.held:
                raise
            bound.exception("inmate_flow_failed")
        else:
            bound.error("service_unavailable", error=type(exc).__name__)
        if not att.held:
            await _deny(ctx, ch, att, decisions.SERVICE_UNAVAILABLE)


async def _dial_number(ctx: FlowContext, ch: Channel, att: Attempt, inmate: Inmate, facility: Facility,
                       bound: Any, preset: str | None = None) -> None:
    raw = preset or await ch.get_data(ctx.speech.prompt("enter_number", att.lang), NUMBER_TIMEOUT_MS,
                                      NUMBER_MAX_DIGITS)
    digits = decisions.clean_number(raw, NUMBER_MAX_DIGITS)
    att.dialled = raw or ""
    if digits is None:
        raise Denied(decisions.NO_NUMBER)
    quoted_at = ctx.clock.now()
    try:
        quote = ctx.catalog.quote(att.facility_id, digits, at=datetime.fromtimestamp(quoted_at, tz=UTC))
    except NumberRefused as exc:
        raise Denied(decisions.number_refusal(exc.code)) from None
    except Exception as exc:
        bound.error("rating_failed", error=type(exc).__name__)
        raise Denied(decisions.SERVICE_UNAVAILABLE) from None
    dest = quote.destination
    att.e164, att.call_class = dest.e164, str(getattr(dest.call_class, "value", dest.call_class))
    if ctx.policy.facility_blocks(att.facility_id, att.e164):
        raise Denied(decisions.BLOCKED_FACILITY)
    if not ctx.policy.allowed(inmate, att.e164):
        raise Denied(decisions.NOT_ALLOWED)
    att.privileged = ctx.policy.is_privileged(att.facility_id, att.e164)
    # The account id follows from facility and number, so the block (the facility's or this inmate's, one
    # EXISTS) and the balance are read at once (one Redis round trip); an unknown account is "no account".
    account = billing.account_for(att.facility_id, att.e164)
    blocked, balance = await asyncio.gather(ctx.ledger.is_blocked(att.facility_id, att.e164, att.inmate),
                                            ctx.ledger.balance(account), return_exceptions=True)
    for outcome in (blocked, balance):
        if isinstance(outcome, BaseException) and not isinstance(outcome, UnknownAccount):
            raise outcome
    if blocked is True:
        raise Denied(decisions.BLOCKED_RECIPIENT)
    unknown = isinstance(balance, UnknownAccount)
    short = isinstance(balance, Balance) and balance.state in ("active", "opened", "closed") \
        and balance.available < quote.minimum_to_connect
    if (unknown or short) and one_call_money.offered(ctx, facility):
        await _dial_one_call(ctx, ch, att, quote, facility, digits, quoted_at, bound)
        return
    if unknown:
        raise Denied(decisions.NO_ACCOUNT)
    assert isinstance(balance, Balance)
    att.account = account
    if balance.state not in ("active", "opened") or balance.available < quote.minimum_to_connect:
        raise Denied(decisions.INSUFFICIENT_FUNDS)
    plan = _plan(ctx, quote, facility, int(quote.max_duration(balance.available)))
    try:
        await billing.hold(ctx.ledger, att.call_id, account, plan.amount, lease_seconds=plan.lease_seconds,
                           meta={"facility": att.facility_id, "inmate": att.inmate, "kind": "call"})
    except billing.HOLD_REFUSED:
        raise Denied(decisions.INSUFFICIENT_FUNDS) from None
    except Exception as exc:
        if billing.maybe_applied(exc):
            await _release_unused(ctx, att)     # the hold may have been taken: nothing will use it
        raise
    att.held = True
    state = CallState(
        call_id=att.call_id, facility_id=att.facility_id, station=att.station, inmate=att.inmate,
        lang=att.lang, dialled=digits, e164=att.e164, call_class=att.call_class, account=account,
        hold_amount=plan.amount, max_seconds=plan.seconds, warning_seconds=plan.warning_seconds,
        increment=int(quote.increment_seconds), capped_by=str(getattr(quote, "capped_by", "") or ""),
        quoted_at=quoted_at, available=balance.available, privileged=att.privileged,
        recorded=not att.privileged, name_file=ctx.name_path(att.call_id), caller_channel=ch.channel_name,
        instance=ctx.instance, created_at=att.started_at, dial_at=ctx.clock.now(),
    )
    ctx.remember_quote(state, quote)
    try:
        await ctx.store.create(state, lease_expires_at=ctx.clock.now() + plan.lease_seconds,
                               ttl_seconds=plan.lease_seconds)
    except Exception:
        await _release_unused(ctx, att)
        raise
    await _connect(ctx, ch, att, state, bound)


def _plan(ctx: FlowContext, quote: Any, facility: Facility, seconds: int) -> decisions.HoldPlan:
    """The hold for a call of at most `seconds` (the facility's warning before the cut); a balance that
    buys no second is insufficient funds."""
    warning = int(getattr(facility, "warning_seconds", 60) or 0)
    plan = decisions.plan_hold(seconds, int(quote.cost(seconds)) if seconds > 0 else 0,
                               ring_timeout=ctx.settings.ring_timeout, screening_margin=ctx.screening_margin,
                               warning_seconds=warning)
    if plan is None:
        raise Denied(decisions.INSUFFICIENT_FUNDS)
    return plan


async def _dial_one_call(ctx: FlowContext, ch: Channel, att: Attempt, quote: Any, facility: Facility,
                         digits: str, quoted_at: float, bound: Any) -> None:
    """An unfunded number at a facility offering one paid call: dial with no hold; the recipient may pay
    this call by card (flows/one_call.py) for the rated cost of the facility's longest call, no fee."""
    plan = _plan(ctx, quote, facility, int(quote.max_duration(ctx.settings.max_amount)))
    att.account = one_call_money.account_for(att.facility_id, att.e164, att.call_id)
    state = CallState(
        call_id=att.call_id, facility_id=att.facility_id, station=att.station, inmate=att.inmate,
        lang=att.lang, dialled=digits, e164=att.e164, call_class=att.call_class, account=att.account,
        pay_amount=plan.amount, max_seconds=plan.seconds, warning_seconds=plan.warning_seconds,
        increment=int(quote.increment_seconds), capped_by=str(getattr(quote, "capped_by", "") or ""),
        quoted_at=quoted_at, privileged=att.privileged, recorded=not att.privileged,
        name_file=ctx.name_path(att.call_id), caller_channel=ch.channel_name, instance=ctx.instance,
        created_at=att.started_at, dial_at=ctx.clock.now(),
    )
    ctx.remember_quote(state, quote)
    await ctx.store.create(state, lease_expires_at=ctx.clock.now() + plan.lease_seconds,
                           ttl_seconds=plan.lease_seconds)
    att.held = True                  # from here the call is settled whatever happens
    bound.info("one_call_offered", authorization=plan.amount, seconds=plan.seconds)
    await _connect(ctx, ch, att, state, bound)


async def _release_unused(ctx: FlowContext, att: Attempt) -> None:
    await release_unused(ctx, att.call_id, att.account)


async def _connect(ctx: FlowContext, ch: Channel, att: Attempt, state: CallState, bound: Any) -> None:
    """From the held funds to the settled call. Whatever happens here, the call is settled."""
    verdict: DialVerdict | None = None
    reason = "inmate_session"
    dialled = False
    dial_status: str | None = None
    dial_ended: float | None = None
    try:
        # First, before anything that takes time: from here the dialplan's hangup handler names the call
        # (AGI hangup?call_id=), so if this process dies now (name recording, notices, Dial) another
        # instance settles it when the channel goes down. Without it the hold waited for its lease.
        await ch.set_variable("CALL_ID", att.call_id)
        await _play(ctx, ch, att.lang, "record_name")
        try:
            reply = await ch.record_file(state.name_file, "wav", "#", ctx.name_record_ms, beep=True)
            recorded = bool(reply.endpos)
        except AGIError as exc:
            # Asterisk could not write the file (no such directory, disk full) or play its beep.
            bound.warning("name_not_recorded", detail=str(exc)[:200])
            recorded = False
        if not recorded:
            # No file, or no audio in it (endpos=0: '#' at once, a line that sends no media): the
            # recipient hears "a prepaid call from an inmate at ..." without the name; the call goes on.
            state.name_file = ""
            await ctx.store.update(att.call_id, name_file="")
        if not att.privileged:
            await ch.exec("MixMonitor", f"{ctx.settings.recording_dir}/{att.call_id}.wav")
        if state.warning_seconds:
            await ch.set_variable("LIMIT_WARNING_FILE", ctx.speech.prompt("time_warning", att.lang))
        notice = "privileged_call_notice" if att.privileged else "monitoring_notice"
        await _play(ctx, ch, att.lang, notice, "please_hold")
        args = decisions.dial_args(ctx.settings.dial_template, state.e164, ctx.settings.ring_timeout,
                                   att.call_id, state.max_seconds, state.warning_seconds)
        if state.pay_amount:         # the inmate hears please_hold while the recipient pays
            args += f"m({HOLD_CLASS}-{att.lang})"
        bound.info("dialling", seconds=state.max_seconds, hold=state.hold_amount, privileged=att.privileged)
        ctx.dialling[ch.channel_name] = att.call_id
        try:
            await ch.exec("Dial", args)
        finally:
            ctx.dialling.pop(ch.channel_name, None)
            ctx.dial_legs.pop(ch.channel_name, None)
        dial_ended = ctx.clock.now()
        dial_status = await ch.get_variable("DIALSTATUS")
        dialled = True
    except AGIHangup:
        reason = "caller_hangup"
    except Exception as exc:
        bound.error("connect_failed", error=type(exc).__name__, detail=str(exc)[:200])
        reason = "connect_failed"
    ended = ctx.clock.now()
    try:
        settled = await settle_call(ctx, att.call_id, ended, reason,
                                    dial_status=dial_status if dialled else None, dial_ended=dial_ended)
    except Exception as exc:
        bound.error("settle_failed", error=type(exc).__name__)   # hangup handler / recovery will retry
        settled = None
        dialled = False            # nothing known about the outcome: no verdict prompt
    if settled is not None:
        verdict = settled[1]
        with contextlib.suppress(AGIHangup, AGIError):   # variables still answer on a dead channel
            await ch.set_variable("CALL_SETTLED", "1")   # the dialplan's hangup handler skips its AGI
    elif dialled:                  # the call's state is gone: judge by Dial's status alone
        verdict = decisions.dial_verdict(dial_status, "")
    if att.request_id and ctx.holder_data is not None and verdict is not None \
            and verdict.outcome == Outcome.COMPLETED:
        try:
            name = str(ctx.catalog.facility(att.facility_id).name)
        except Exception:
            name = att.facility_id
        ctx.holder_data.answered(att.request_id, att.call_id, name)
    if ch.hungup or verdict is None or verdict.prompt is None:
        return
    try:
        await _play(ctx, ch, att.lang, verdict.prompt, *(["goodbye"] if verdict.prompt != "goodbye" else []))
        await ch.hangup()
    except (AGIHangup, AGIError):
        pass
