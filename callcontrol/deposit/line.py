"""The 800 deposit line: `agi://…/deposit[?facility=FAC-07]`. A family funds the AdvancePay account of
their own phone number at a facility with a card, by keypad.

    language (1 en, 2 es) -> main menu (1 deposit; 2, 3, 4 account options in menu.py; 0 repeat)
    -> number the inmate will call, read back (1 correct, 2 re-enter)
    -> facility (the query's; else a menu of those with an account plus "another facility", or of all
       when there is none) -> account (opened at posting if new)
    -> amount in whole dollars, read back -> card (Luhn) -> expiry MMYY -> CVV -> confirm (1 / 2)
    -> authorize -> ledger.deposit -> capture -> "available balance is ..."

Money safety: nothing is authorized before the caller presses 1 at the confirmation, so a hang-up or a
cancel before that charges nothing. Once confirmed, the charge runs to its end even if the caller hangs up
(authorize, credit, capture), and when the credit cannot be posted the authorization is voided: a card is
never charged without the account being credited. The gateway's idempotency key derives from the Asterisk
channel and the account, and the ledger op ids derive from the key, so a retry or a re-run AGI never
reserves, credits or captures twice. Card number, expiry and CVV are read with sensitive GET DATA, held
in local variables only, passed to the gateway and dropped: never logged, never stored; only the last four
digits and the authorization id are kept (Redis deposit record, ledger reference).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from callcontrol import billing, decisions
from callcontrol.asterisk.agi import AGIError, AGIHangup
from callcontrol.deposit.entry import (
    DepositLimits,
    idempotency_key,
    parse_amount,
    parse_number,
    spoken_number,
)
from callcontrol.deposit.menu import AccountMenu
from callcontrol.flows.context import FlowContext
from callcontrol.flows.ports import Channel
from payments.authorizenet import AuthorizeNetGateway
from payments.cards import CARD_MAX_DIGITS, card_number_ok, cvv_ok, expiry_problem
from payments.gateway import PaymentGateway
from payments.saga import LEDGER_SETTLE_SECONDS, DepositOrder, DepositOutcome, charge
from payments.sandbox import SandboxGateway
from payments.trail import DepositTrail
from rating import NumberRefused

log = structlog.get_logger("callcontrol.deposit")

LANGUAGES = ("en", "es")                # the choose_language prompt: 1 English, 2 Spanish
MENU_WAIT_MS = 5000
NUMBER_TIMEOUT_MS = 10000
NUMBER_MAX_DIGITS = 18                  # 011 + 15 E.164 digits
AMOUNT_TIMEOUT_MS = 8000
AMOUNT_MAX_DIGITS = 6
CARD_TIMEOUT_MS = 15000
SHORT_TIMEOUT_MS = 8000
MAX_FACILITY_MENU = 9
CHARGE_DRAIN_SECONDS = 30.0             # Controller.stop waits this long for charges in flight


class EndCall(Exception):
    """Stop the flow, play these prompt ids (then goodbye) and hang up. Nothing was charged."""

    def __init__(self, reason: str, *prompt_ids: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.prompt_ids = prompt_ids


@dataclass
class Session:
    ch: Channel
    lang: str = "en"
    step: str = "start"
    log: Any = None
    digits: str = ""                 # number as read back
    e164: str = ""
    facility_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class DepositLine:
    """The `deposit` FastAGI route. ``gateway`` None means none configured: the line fails closed."""

    def __init__(self, ctx: FlowContext, gateway: PaymentGateway | None = None,
                 limits: DepositLimits | None = None) -> None:
        self.ctx = ctx
        self.gateway = gateway if gateway is not None else gateway_from_settings(ctx.settings, ctx.clock)
        self.limits = limits or DepositLimits.from_settings(ctx.settings)
        self.settle_seconds = LEDGER_SETTLE_SECONDS
        self.charges: set[asyncio.Task[DepositOutcome]] = set()     # in flight: Controller.stop awaits

    async def __call__(self, ch: Channel) -> None:
        s = Session(ch)
        s.log = log.bind(uniqueid=ch.uniqueid, channel=ch.channel_name)
        try:
            await self._run(s)
        except EndCall as end:
            s.log.info("deposit_ended", reason=end.reason, step=s.step)
            await self._finish(s, *end.prompt_ids)
        except AGIHangup:
            s.log.info("deposit_abandoned", step=s.step)       # before confirmation: nothing charged
        except Exception as exc:
            if isinstance(exc, AGIError):
                s.log.warning("deposit_agi_error", step=s.step, error=str(exc)[:120])
            else:
                s.log.error("deposit_unavailable", step=s.step, error=type(exc).__name__)
            await self._finish(s, "deposit_unavailable")

    async def drain(self, timeout: float = CHARGE_DRAIN_SECONDS) -> int:
        """Wait (at most ``timeout`` s) for the charges in flight to finish, so a shutdown never strands
        an authorization: called by Controller.stop before the ledger and the store close. Returns how
        many were still running (their trails stay `authorizing`/`authorized`/`posted`: reconcile)."""
        if not self.charges:
            return 0
        _, pending = await asyncio.wait(set(self.charges), timeout=timeout)
        if pending:
            log.error("deposit_charges_abandoned", count=len(pending))
        return len(pending)

    # -- prompts ----------------------------------------------------------------------------------
    def _files(self, s: Session, ids: Sequence[str]) -> list[str]:
        return [self.ctx.speech.prompt(i, s.lang) for i in ids]

    async def _play(self, s: Session, ids: Sequence[str], escape: str = "") -> str:
        for name in self._files(s, ids):
            key: str = await s.ch.stream_file(name, escape)
            if key:
                return key
        return ""

    async def _finish(self, s: Session, *ids: str) -> None:
        with contextlib.suppress(AGIHangup, AGIError):
            await self._play(s, [*ids, "goodbye"])
            await s.ch.hangup()

    async def _menu(self, s: Session, ids: Sequence[str], keys: str) -> str:
        """Play, stopping at a key; wait a moment; "" when nothing valid was pressed."""
        key = await self._play(s, ids, keys)
        if not key:
            key = await s.ch.wait_for_digit(MENU_WAIT_MS)
        return key if key and key in keys else ""

    async def _ask(self, s: Session, prompt_id: str, timeout_ms: int, max_digits: int, *,
                   sensitive: bool = False) -> str | None:
        entry: str | None = await s.ch.get_data(self.ctx.speech.prompt(prompt_id, s.lang), timeout_ms,
                                                max_digits, sensitive=sensitive)
        return entry

    def _too_many(self, s: Session) -> EndCall:
        return EndCall(f"too_many_tries_{s.step}", "deposit_too_many_tries")

    # -- steps ------------------------------------------------------------------------------------
    async def _run(self, s: Session) -> None:
        await s.ch.answer()
        s.step = "language"
        offered = tuple(lang for lang in LANGUAGES if lang in self.ctx.speech.available_languages())
        s.lang = offered[0] if offered else "en"
        key = await self._play(s, ["deposit_welcome"], "12")
        if len(offered) > 1:
            key = key or await self._menu(s, ["choose_language"], "12")
            s.lang = decisions.choose_language(offered, key)
        choice = await self._main_menu(s)
        if choice != "1":
            await AccountMenu(self).run(s, choice)
            return
        if self.gateway is None:
            raise EndCall("no_gateway_configured", "deposit_unavailable")
        await self._number(s)
        account, open_first = await self._facility_and_account(s)
        cents = await self._amount(s)
        card = await self._card(s)
        expiry = await self._expiry(s)
        cvv = await self._cvv(s, card)
        await self._confirm(s, cents)
        if s.ch.hungup:
            raise AGIHangup("caller gone before the charge")
        s.step = "charge"
        trail = self.trail
        attempt = await trail.attempt_key(idempotency_key(s.ch.uniqueid, account))  # Redis down: raises
        if attempt is None:
            raise EndCall("too_many_attempts", "deposit_unavailable")
        key, replay = attempt
        order = DepositOrder(key, s.facility_id, s.e164, account, cents, open_first)
        if not replay:      # (a replay keeps the earlier run's trail; reading it checked Redis is up)
            await trail.record(order, "authorizing", {})  # Redis down: fail closed before any charge
        task = asyncio.ensure_future(charge(
            self.ctx.ledger, self.gateway, order, card, expiry, cvv, settle=self.settle_seconds,
            replay=replay, on_state=lambda state, fields: trail.record(order, state, fields)))
        self.charges.add(task)
        task.add_done_callback(self.charges.discard)
        del card, expiry, cvv
        outcome = await asyncio.shield(task)          # a cancelled session still finishes the charge
        s.log.info("deposit_result", status=outcome.status, reason=outcome.reason, last4=outcome.last4)
        if outcome.status == "posted":
            assert outcome.available is not None
            money = self.ctx.speech.say_money(max(0, outcome.available), s.lang)
            ids = ["deposit_success", "balance_is", *money]
            await self._finish(s, *ids)
        elif outcome.status == "declined":
            await self._finish(s, "deposit_declined")
        elif outcome.status == "unknown":
            # We do not know whether the card will be charged: say so, and ask not to pay again now
            # (never "you have not been charged"); the trail is "unknown" for reconciliation.
            await self._finish(s, "deposit_unconfirmed")
        else:
            await self._finish(s, "deposit_unavailable")

    async def _main_menu(self, s: Session) -> str:
        """1 deposit, 2 balance and last calls, 3 AutoReload, 4 Request2Call, 0 repeat (docs/deposit.md)."""
        s.step = "menu"
        for _ in range(self.limits.tries + 1):
            key = await self._menu(s, ["line_menu"], "12340")
            if key and key != "0":
                return key
            if not key:
                await self._play(s, ["invalid_choice"])
        raise self._too_many(s)

    @property
    def trail(self) -> DepositTrail:
        return DepositTrail(self.ctx.store.r, self.ctx.clock.now, gateway_name(self.gateway))

    async def _number(self, s: Session) -> None:
        s.step = "number"
        for _ in range(self.limits.tries):
            raw = await self._ask(s, "deposit_enter_number", NUMBER_TIMEOUT_MS, NUMBER_MAX_DIGITS)
            e164, problem = parse_number(raw)
            if e164 is None:
                s.log.info("deposit_entry_refused", field="number", problem=problem)
                await self._play(s, ["number_invalid"])      # the inmate-side wording fits no other case
                continue
            digits = spoken_number(e164)
            ids = ["deposit_to_number", *self.ctx.speech.say_digits(digits, s.lang),
                   "deposit_number_correct"]
            key = await self._menu(s, ids, "12")
            if key == "1":
                s.e164, s.digits = e164, digits
                return
            if not key:
                await self._play(s, ["invalid_choice"])
        raise self._too_many(s)

    async def _facility_and_account(self, s: Session) -> tuple[str, bool]:
        """Facility rule: the AGI query's `facility` (one DID per facility) if given; otherwise a menu of
        the facilities where this number has accounts plus "another facility" (then a menu of the
        others), or of every facility when it has none; no question when there is one choice."""
        s.step = "facility"
        ledger = self.ctx.ledger
        wanted = s.ch.query.get("facility") or ""
        if wanted:
            try:
                self.ctx.catalog.facility(wanted)
            except Exception:
                s.log.warning("deposit_unknown_facility", facility_id=wanted)
                raise EndCall("unknown_facility", "deposit_unavailable") from None
            s.facility_id = wanted
        else:
            ids = [f.id for f in self.ctx.catalog.facilities]
            found = await asyncio.gather(*(ledger.find_account(fid, s.e164) for fid in ids))
            held = [fid for fid, acc in zip(ids, found, strict=True) if acc]
            others = [fid for fid in ids if fid not in held]
            # The facilities where this number has accounts, and "another facility" while there are
            # others: a relative moved to another facility must not have the money land at the old one.
            picked = await self._pick_facility(s, held, other=bool(others)) if held else None
            chosen = picked or await self._pick_facility(s, others)
            assert chosen is not None           # without "another facility" a menu always picks one
            s.facility_id = chosen
        try:
            self.ctx.catalog.classify(s.facility_id, s.e164)
        except NumberRefused as exc:
            raise EndCall(f"number_{exc.code}", decisions.number_refusal(exc.code).prompt) from None
        account = await ledger.find_account(s.facility_id, s.e164)
        if account is None:
            return billing.account_for(s.facility_id, s.e164), True
        state = (await ledger.balance(account)).state
        if state == "frozen":
            raise EndCall("account_frozen", "deposit_account_frozen")
        return account, state == "closed"      # a closed account is reopened by the deposit

    async def _pick_facility(self, s: Session, choices: list[str], *, other: bool = False) -> str | None:
        """One of `choices` (no question when it is the only one and there is no other), or None when
        the caller asked for another facility. At most 9 entries: more needs per-facility DIDs."""
        if len(choices) == 1 and not other:
            return choices[0]
        if len(choices) + other > MAX_FACILITY_MENU:
            raise EndCall("facility_menu_too_long", "deposit_unavailable")
        sp = self.ctx.speech
        ids: list[str] = []
        for i, fid in enumerate(choices, 1):
            ids += [*sp.facility_name(fid, s.lang), "deposit_press", *sp.say_digits(str(i), s.lang)]
        if other:
            ids += ["deposit_other_facility", "deposit_press", *sp.say_digits(str(len(choices) + 1), s.lang)]
        keys = "".join(str(i) for i in range(1, len(choices) + other + 1))
        for _ in range(self.limits.tries):
            key = await self._menu(s, ids, keys)
            if key:
                return choices[int(key) - 1] if int(key) <= len(choices) else None
            await self._play(s, ["invalid_choice"])
        raise self._too_many(s)

    async def _amount(self, s: Session) -> int:
        s.step = "amount"
        for _ in range(self.limits.tries):
            raw = await self._ask(s, "deposit_enter_amount", AMOUNT_TIMEOUT_MS, AMOUNT_MAX_DIGITS)
            cents, problem = parse_amount(raw, self.limits)
            if cents is not None:
                await self._play(s, ["deposit_amount_is", *self.ctx.speech.say_money(cents, s.lang)])
                return cents
            s.log.info("deposit_entry_refused", field="amount", problem=problem)
            await self._play(s, ["deposit_min_max" if problem == "out_of_range" else "invalid_choice"])
        raise self._too_many(s)

    async def _card(self, s: Session) -> str:
        s.step = "card"
        for _ in range(self.limits.tries):
            raw = await self._ask(s, "deposit_enter_card", CARD_TIMEOUT_MS, CARD_MAX_DIGITS, sensitive=True)
            if raw and card_number_ok(raw):
                return raw
            s.log.info("deposit_entry_refused", field="card", problem="invalid")
            await self._play(s, ("deposit_card_invalid",))
        raise self._too_many(s)

    async def _expiry(self, s: Session) -> str:
        s.step = "expiry"
        now = datetime.fromtimestamp(self.ctx.clock.now(), tz=UTC)
        for _ in range(self.limits.tries):
            raw = await self._ask(s, "deposit_enter_expiry", SHORT_TIMEOUT_MS, 4, sensitive=True)
            problem = expiry_problem(raw, now)
            if problem is None and raw:
                return raw
            s.log.info("deposit_entry_refused", field="expiry", problem=problem)
            complaint = "deposit_card_expired" if problem == "expired" else "invalid_choice"
            await self._play(s, (complaint,))
        raise self._too_many(s)

    async def _cvv(self, s: Session, card: str) -> str:
        s.step = "cvv"
        for _ in range(self.limits.tries):
            raw = await self._ask(s, "deposit_enter_cvv", SHORT_TIMEOUT_MS, 4, sensitive=True)
            if raw and cvv_ok(raw, card):
                return raw
            s.log.info("deposit_entry_refused", field="cvv", problem="invalid")
            await self._play(s, ["invalid_choice"])
        raise self._too_many(s)

    async def _confirm(self, s: Session, cents: int) -> None:
        s.step = "confirm"
        sp = self.ctx.speech
        ids = ["deposit_amount_is", *sp.say_money(cents, s.lang), "deposit_to_number",
               *sp.say_digits(s.digits, s.lang), "deposit_at", *sp.facility_name(s.facility_id, s.lang),
               "deposit_confirm"]
        for _ in range(self.limits.tries):
            key = await self._menu(s, ids, "12")
            if key == "1":
                return
            if key == "2":
                raise EndCall("cancelled", "deposit_cancelled")
            await self._play(s, ["invalid_choice"])
        raise self._too_many(s)


def gateway_from_settings(settings: Any, clock: Any = None) -> PaymentGateway | None:
    """`payment_gateway = "sandbox"` gives the sandbox, "authorizenet" Authorize.Net; anything else none
    (the line then refuses deposits: a production controller must never take sandbox cards)."""
    kind = str(getattr(settings, "payment_gateway", "") or "")
    if kind == "sandbox":
        return SandboxGateway(now=clock.now if clock is not None else None)
    if kind == "authorizenet":
        return AuthorizeNetGateway(settings.authorizenet_login_id, settings.authorizenet_transaction_key,
                                   url=settings.authorizenet_url,
                                   timeout=float(settings.authorizenet_timeout))
    return None


def deposit_route(ctx: FlowContext, gateway: PaymentGateway | None = None) -> DepositLine:
    """What the controller registers as the `deposit` route."""
    return DepositLine(ctx, gateway)


def gateway_name(gateway: PaymentGateway | None) -> str:
    """The processor's short name for the payment trail ("sandbox", "authorizenet", else the class)."""
    if isinstance(gateway, SandboxGateway):
        return "sandbox"
    if isinstance(gateway, AuthorizeNetGateway):
        return "authorizenet"
    return type(gateway).__name__.lower()[:32] if gateway is not None else ""
