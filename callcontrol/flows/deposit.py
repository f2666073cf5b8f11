"""The 800 deposit line: `agi://…/deposit[?facility=FAC-07]`. A family funds the AdvancePay account of
their own phone number at a facility with a card, by keypad.

    language (1 en, 2 es) -> number the inmate will call, read back (1 correct, 2 re-enter)
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
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from callcontrol import decisions
from callcontrol.asterisk.agi import AGIError, AGIHangup
from callcontrol.flows.context import FlowContext
from callcontrol.payments import (
    CARD_MAX_DIGITS,
    GatewayError,
    IdempotencyConflict,
    PaymentError,
    PaymentGateway,
    SandboxGateway,
    card_number_ok,
    cvv_ok,
    expiry_problem,
)

log = structlog.get_logger("callcontrol.deposit")

SOURCE = "ivr-card"
DEPOSIT_KEY = "apc:deposit:{}"          # hash: facility, number, account, amount, last4, ref, state
DEPOSIT_TTL = 30 * 86400
LANGUAGES = ("en", "es")                # the choose_language prompt: 1 English, 2 Spanish
MENU_WAIT_MS = 5000
NUMBER_TIMEOUT_MS = 10000
NUMBER_MAX_DIGITS = 18                  # 011 + 15 E.164 digits
AMOUNT_TIMEOUT_MS = 8000
AMOUNT_MAX_DIGITS = 6
CARD_TIMEOUT_MS = 15000
SHORT_TIMEOUT_MS = 8000
MAX_FACILITY_MENU = 9
LEDGER_SETTLE_SECONDS = 20.0            # how long a credit of unknown outcome is retried to learn it
BACKOFF_CAP = 2.0
CHARGE_DRAIN_SECONDS = 30.0             # Controller.stop waits this long for charges in flight
MAX_ATTEMPTS = 9                        # new keys per channel and account after closed attempts
# Trail states of an attempt that ended with nothing charged and nothing credited: a new deposit on the
# same channel needs a new gateway key (a replay would return the voided authorization).
CLOSED_STATES = frozenset({"declined", "voided", "gateway_failed", "reversed"})
# Trail states nothing may overwrite (a later run on the same key must not rewrite what happened).
FINAL_STATES = CLOSED_STATES | {"captured"}
_FINAL_ARG = "|" + "|".join(sorted(FINAL_STATES)) + "|"       # what _RECORD_LUA searches for "|state|"
_RECORD_LUA = """
local cur = redis.call('HGET', KEYS[1], 'state')
if cur and string.find(ARGV[2], '|' .. cur .. '|', 1, true) then return 0 end
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 4 + 2 * n, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

DEFAULT_MIN_CENTS = 100                 # $1; no minimum balance may be required (47 CFR 64.6100)
DEFAULT_MAX_CENTS = 30_000              # $300 per transaction
REQUIRED_MAX_CENTS = 5_000              # deposits of at least $50 must be accepted (47 CFR 64.6100)


@dataclass(frozen=True)
class DepositLimits:
    """Per-transaction limits in cents and tries per field."""

    min_cents: int = DEFAULT_MIN_CENTS
    max_cents: int = DEFAULT_MAX_CENTS
    tries: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_cents <= DEFAULT_MIN_CENTS:
            raise ValueError("the minimum deposit must be 1..100 cents (no minimum-balance requirement)")
        if self.max_cents < REQUIRED_MAX_CENTS:
            raise ValueError("the maximum deposit must accept at least $50 (47 CFR 64.6100)")
        if self.tries < 1:
            raise ValueError("tries must be >= 1")

    @classmethod
    def from_settings(cls, settings: Any) -> DepositLimits:
        """`deposit_max_cents` from the settings when they have it; never above the ledger ceiling."""
        maximum = int(getattr(settings, "deposit_max_cents", DEFAULT_MAX_CENTS) or DEFAULT_MAX_CENTS)
        ceiling = int(getattr(settings, "max_amount", maximum))
        if maximum > ceiling:
            raise ValueError(f"deposit maximum {maximum} exceeds the ledger ceiling {ceiling} cents")
        return cls(max_cents=maximum)


# --- pure entry checks -----------------------------------------------------------------------------------

def parse_amount(entry: str | None, limits: DepositLimits) -> tuple[int | None, str]:
    """Whole dollars keyed -> (cents, "") or (None, "malformed" | "out_of_range")."""
    if not entry or not (entry.isascii() and entry.isdigit()):
        return None, "malformed"
    cents = int(entry) * 100
    if not limits.min_cents <= cents <= limits.max_cents:
        return None, "out_of_range"
    return cents, ""


def spoken_number(e164: str) -> str:
    """What is read back: the 10 digits of a NANP number, else the international digits."""
    return e164[2:] if e164.startswith("+1") and len(e164) == 12 else e164[1:]


def parse_number(entry: str | None) -> tuple[str | None, str]:
    """Keyed number (10 digits, 1 + 10, or 011 + international) -> (E.164, "") or (None, refusal code).
    Facility-independent; the chosen facility's own rules are checked later (catalog.classify)."""
    from rating import numbers
    from rating.errors import NumberRefused

    if not entry:
        return None, "invalid"
    try:
        info = numbers.lookup(numbers.normalize(entry))
        numbers.refuse_by_policy(info, frozenset())
    except NumberRefused as exc:
        return None, exc.code
    return info.e164, ""


def idempotency_key(uniqueid: str, account_id: str) -> str:
    """One deposit per Asterisk channel and account: a re-run of the AGI for the same channel replays."""
    uid = re.sub(r"[^A-Za-z0-9.]", "", uniqueid or "")[:48] or secrets.token_hex(8)
    return f"dep-{uid}-{account_id}"


# --- the charge: authorize -> credit -> capture, or void -------------------------------------------------

@dataclass(frozen=True)
class DepositOrder:
    key: str                 # gateway idempotency key; ledger op ids are "<key>:open" / "<key>:dep"
    facility_id: str
    number_e164: str
    account_id: str
    cents: int
    open_first: bool = False


@dataclass(frozen=True)
class DepositOutcome:
    status: Literal["posted", "declined", "failed", "unknown"]     # unknown: see the trail, reconcile
    reason: str = ""
    ref: str = ""            # gateway authorization id
    last4: str = ""
    available: int | None = None
    voided: bool = False


def _transient(exc: BaseException) -> bool:
    return type(exc).__name__ == "LedgerUnavailable" or isinstance(exc, ConnectionError | OSError
                                                                   | TimeoutError)


def _not_sent(exc: BaseException) -> bool:
    """This attempt certainly did not post: the ledger never ran it (LedgerUnavailable.not_applied)."""
    return bool(getattr(exc, "not_applied", False))


async def _retry(what: Callable[[], Any], tries: int, backoff: float,
                 transient: Callable[[BaseException], bool]) -> Any:
    for attempt in range(tries):
        try:
            return await what()
        except Exception as exc:
            if attempt == tries - 1 or not transient(exc):
                raise
            await asyncio.sleep(backoff * 2 ** attempt)
    raise AssertionError("unreachable")


async def _credit(ledger: Any, order: DepositOrder, reference: str, *, tries: int, backoff: float,
                  settle: float, replay: bool) -> tuple[str, Any]:
    """Post the credit -> ("posted", balance), ("refused", error) when it certainly was not posted, or
    ("unknown", error). The deposit op id is idempotent (a replay returns the first result), so after a
    failure whose outcome is unknown the same op is retried, with backoff, for up to ``settle`` seconds
    to learn it. ``replay``: an earlier run with this key may already have sent the deposit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    maybe_sent = replay
    attempt = 0
    while True:
        try:
            if order.open_first:
                await ledger.open_account(f"{order.key}:open", order.facility_id, order.number_e164)
            try:
                return "posted", await ledger.deposit(f"{order.key}:dep", order.account_id, order.cents,
                                                      source=SOURCE, reference=reference)
            except Exception as exc:
                if _transient(exc) and not _not_sent(exc):
                    maybe_sent = True
                raise
        except Exception as exc:
            if not _transient(exc):
                return "refused", exc       # a definite answer (after a lost reply: the first result)
            last = exc
        attempt += 1
        if not maybe_sent and attempt >= tries:
            return "refused", last          # no attempt ever reached Redis: certainly not posted
        if loop.time() >= deadline:
            return ("unknown" if maybe_sent else "refused"), last
        await asyncio.sleep(min(backoff * 2 ** (attempt - 1), BACKOFF_CAP, max(0.0, deadline - loop.time())))


async def charge(ledger: Any, gateway: PaymentGateway, order: DepositOrder, card: str, expiry: str, cvv: str,
                 *, tries: int = 3, backoff: float = 0.05, settle: float = LEDGER_SETTLE_SECONDS,
                 replay: bool = False,
                 on_state: Callable[[str, dict[str, str]], Any] | None = None) -> DepositOutcome:
    """Authorize, credit the account, capture. Replays with the same key post once. If the credit is
    certainly not posted the authorization is voided (fail closed); if its outcome stays unknown (see
    `_credit`) the authorization is kept (never captured) and the trail says "unknown" for
    reconciliation. ``on_state`` hears each step (no card data)."""
    bound = log.bind(key=order.key, account=order.account_id, amount=order.cents)

    async def note(state: str, **fields: str) -> None:
        if on_state is not None:
            with contextlib.suppress(Exception):
                await on_state(state, fields)

    try:
        auth = await _retry(lambda: gateway.authorize(order.key, card, expiry, cvv, order.cents), tries,
                            backoff, lambda e: isinstance(e, GatewayError))
    except GatewayError:
        # Outcome unknown: the processor may have authorized. Release by key whatever it holds.
        try:
            await _retry(lambda: gateway.void_by_key(order.key), tries, backoff,
                         lambda e: isinstance(e, GatewayError))
        except Exception as void_exc:
            bound.error("deposit_gateway_unknown", error=type(void_exc).__name__)
            await note("unknown", reason="gateway_unknown")
            return DepositOutcome("unknown", "gateway_unknown")
        bound.warning("deposit_gateway_failed", error="GatewayError", voided=True)
        await note("voided", reason="gateway_error")
        return DepositOutcome("failed", "gateway_error", voided=True)
    except IdempotencyConflict:
        # The key belongs to an earlier request (another card or amount on a re-run): nothing was
        # authorized now, and the trail is that request's, so it is left as it is.
        bound.warning("deposit_gateway_failed", error="IdempotencyConflict")
        return DepositOutcome("failed", "gateway_error")
    except Exception as exc:                # refused outright (malformed): nothing held
        bound.warning("deposit_gateway_failed", error=type(exc).__name__)
        await note("gateway_failed")
        return DepositOutcome("failed", "gateway_error")
    if not auth.approved:
        bound.info("deposit_declined", reason=auth.decline_reason, last4=auth.last4)
        await note("declined", last4=auth.last4, reason=auth.decline_reason)
        return DepositOutcome("declined", auth.decline_reason, last4=auth.last4)
    await note("authorized", last4=auth.last4, ref=auth.auth_id)

    result, balance = await _credit(ledger, order, auth.auth_id, tries=tries, backoff=backoff, settle=settle,
                                    replay=replay)
    if result == "unknown":
        # The credit may be posted: voiding could credit the account for free, capturing could charge
        # without a credit. Keep the authorization (uncaptured, it lapses at the issuer) and reconcile.
        bound.error("deposit_outcome_unknown", ref=auth.auth_id, last4=auth.last4,
                    error=getattr(balance, "code", type(balance).__name__))
        await note("unknown", ref=auth.auth_id, reason="ledger_unknown")
        return DepositOutcome("unknown", "ledger_unknown", auth.auth_id, auth.last4)
    if result == "refused":
        code = getattr(balance, "code", type(balance).__name__)
        try:
            await _retry(lambda: gateway.void(auth.auth_id), tries, backoff,
                         lambda e: isinstance(e, GatewayError))
            voided = True
        except Exception as void_exc:       # never captured, so it lapses on the card; operators see this
            bound.error("deposit_void_failed", ref=auth.auth_id, error=type(void_exc).__name__)
            voided = False
        bound.error("deposit_not_posted", ref=auth.auth_id, error=code, voided=voided)
        await note("voided" if voided else "void_failed", ref=auth.auth_id)
        return DepositOutcome("failed", f"ledger_{code}", auth.auth_id, auth.last4, voided=voided)
    await note("posted", ref=auth.auth_id)
    try:
        await _retry(lambda: gateway.capture(auth.auth_id, order.cents), tries, backoff,
                     lambda e: isinstance(e, GatewayError))
        await note("captured", ref=auth.auth_id)
    except PaymentError as exc:
        if isinstance(exc, GatewayError | IdempotencyConflict):
            # outcome unknown (or captured for another amount): credited, maybe not captured; the
            # operator's loss, never the family's
            bound.error("deposit_capture_failed", ref=auth.auth_id, error=type(exc).__name__)
            await note("capture_failed", ref=auth.auth_id)
        else:
            # The gateway refused the capture (e.g. a voided authorization): the card is not charged,
            # so the credit is taken back and the caller never hears "success".
            return await _reverse(ledger, order, auth.auth_id, auth.last4, note, bound, tries=tries,
                                  backoff=backoff, error=type(exc).__name__)
    except Exception as exc:
        bound.error("deposit_capture_failed", ref=auth.auth_id, error=type(exc).__name__)
        await note("capture_failed", ref=auth.auth_id)
    available = balance.available
    with contextlib.suppress(Exception):        # a replay returns the first balance; say the current one
        available = (await ledger.balance(order.account_id)).available
    bound.info("deposit_posted", ref=auth.auth_id, last4=auth.last4, available=available)
    return DepositOutcome("posted", "", auth.auth_id, auth.last4, available)


async def _reverse(ledger: Any, order: DepositOrder, ref: str, last4: str, note: Any, bound: Any, *,
                   tries: int, backoff: float, error: str) -> DepositOutcome:
    """The capture was refused: undo the credit (op id ``<key>:undo``). If the undo fails too, the
    trail stays "capture_refused" (a re-run replays this key and tries again) and operators see it."""
    try:
        await _retry(lambda: ledger.adjust(f"{order.key}:undo", order.account_id, -order.cents,
                                           reason=f"card capture refused {ref}"), tries, backoff, _transient)
    except Exception as exc:
        bound.error("deposit_capture_refused", ref=ref, error=error, undone=False,
                    undo_error=getattr(exc, "code", type(exc).__name__))
        await note("capture_refused", ref=ref)
        return DepositOutcome("failed", "capture_refused", ref, last4)
    bound.error("deposit_capture_refused", ref=ref, error=error, undone=True)
    await note("reversed", ref=ref)
    return DepositOutcome("failed", "capture_refused", ref, last4, voided=True)


# --- the call flow ---------------------------------------------------------------------------------------

class EndCall(Exception):
    """Stop the flow, play these prompt ids (then goodbye) and hang up. Nothing was charged."""

    def __init__(self, reason: str, *prompt_ids: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.prompt_ids = prompt_ids


@dataclass
class Session:
    ch: Any
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

    async def __call__(self, ch: Any) -> None:
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
            key = await s.ch.stream_file(name, escape)
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
        return await s.ch.get_data(self.ctx.speech.prompt(prompt_id, s.lang), timeout_ms, max_digits,
                                   sensitive=sensitive)

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
        key, replay = await self._attempt_key(idempotency_key(s.ch.uniqueid, account))
        order = DepositOrder(key, s.facility_id, s.e164, account, cents, open_first)
        if not replay:      # (a replay keeps the earlier run's trail; reading it checked Redis is up)
            await self._record(order, "authorizing", {})  # Redis down: fail closed before any charge
        task = asyncio.ensure_future(charge(
            self.ctx.ledger, self.gateway, order, card, expiry, cvv, settle=self.settle_seconds,
            replay=replay,
            on_state=lambda state, fields: self._record(order, state, fields)))
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

    async def _attempt_key(self, base: str) -> tuple[str, bool]:
        """The gateway key of this attempt, and whether it replays an earlier one. An AGI re-run on the
        same channel replays the earlier attempt's key (one authorization, one posting) unless that
        attempt is closed (declined, voided...): replaying a voided authorization would credit without
        charging, so a closed attempt's successor gets a new key ``<base>-2``, ``-3``... Redis down:
        raises (fail closed, nothing charged)."""
        for n in range(1, MAX_ATTEMPTS + 1):
            key = base if n == 1 else f"{base}-{n}"
            state = await self.ctx.store.r.hget(DEPOSIT_KEY.format(key), "state")
            if isinstance(state, bytes):
                state = state.decode()
            if state is None:
                return key, False
            if state not in CLOSED_STATES:
                return key, True
        raise EndCall("too_many_attempts", "deposit_unavailable")

    async def _record(self, order: DepositOrder, state: str, fields: dict[str, str]) -> None:
        """The deposit's trail in Redis: who, how much, state, last four digits and the gateway's id.
        A final state (captured, voided, declined...) is never overwritten, and who/how much are written
        once (one Lua script, atomic)."""
        key = DEPOSIT_KEY.format(order.key)
        mapping = {"state": state, "updated": f"{self.ctx.clock.now():.3f}", **fields}
        once: dict[str, str] = {}
        if state == "authorizing":
            once = {"facility": order.facility_id, "number": order.number_e164,
                    "account": order.account_id, "amount": str(order.cents)}
        args = [str(DEPOSIT_TTL), _FINAL_ARG, str(len(mapping))]
        for k, v in [*mapping.items(), *once.items()]:
            args += [k, v]
        await self.ctx.store.r.eval(_RECORD_LUA, 1, key, *args)

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
            s.facility_id = picked or await self._pick_facility(s, others)
        try:
            self.ctx.catalog.classify(s.facility_id, s.e164)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if type(exc).__name__ != "NumberRefused" or not code:
                raise
            raise EndCall(f"number_{code}", decisions.number_refusal(code).prompt) from None
        from ledger.keys import account_id_for

        account = await ledger.find_account(s.facility_id, s.e164)
        if account is None:
            return account_id_for(s.facility_id, s.e164), True
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
    """`payment_gateway = "sandbox"` in the settings gives the sandbox; anything else none (the line then
    refuses deposits: a production controller must never take sandbox cards)."""
    kind = str(getattr(settings, "payment_gateway", "") or "")
    if kind == "sandbox":
        return SandboxGateway(now=clock.now if clock is not None else None)
    return None


def deposit_route(ctx: FlowContext, gateway: PaymentGateway | None = None) -> DepositLine:
    """What the controller registers as the `deposit` route."""
    return DepositLine(ctx, gateway)
