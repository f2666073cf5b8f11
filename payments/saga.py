"""The payment saga of one deposit: authorize the card -> credit the ledger -> capture, or void.

Fail closed: a card is never charged without the account being credited. The gateway's idempotency key
is the order's key and the ledger op ids derive from it ("<key>:open", "<key>:dep", "<key>:undo"), so a
retry or a re-run never reserves, credits or captures twice. Card data is passed to the gateway and
dropped; ``on_state`` (the trail) hears each step with the last four digits and the authorization id
only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from ledger import LedgerError, LedgerUnavailable
from payments.cards import brand
from payments.gateway import GatewayError, IdempotencyConflict, PaymentError, PaymentGateway

log = structlog.get_logger("payments.saga")

SOURCE = "ivr-card"                     # the ledger deposit's source
LEDGER_SETTLE_SECONDS = 20.0            # how long a credit of unknown outcome is retried to learn it
BACKOFF_CAP = 2.0


@dataclass(frozen=True)
class DepositOrder:
    key: str                 # gateway idempotency key; ledger op ids are "<key>:open" / "<key>:dep"
    facility_id: str
    number_e164: str
    account_id: str
    cents: int
    open_first: bool = False
    source: str = SOURCE     # the ledger deposit's source (statement note)


@dataclass(frozen=True)
class DepositOutcome:
    status: Literal["posted", "declined", "failed", "unknown"]     # unknown: see the trail, reconcile
    reason: str = ""
    ref: str = ""            # gateway authorization id
    last4: str = ""
    available: int | None = None
    voided: bool = False


def _transient(exc: BaseException) -> bool:
    return (isinstance(exc, LedgerError) and exc.transient) or isinstance(exc, ConnectionError | OSError
                                                                          | TimeoutError)


def _not_sent(exc: BaseException) -> bool:
    """This attempt certainly did not post: the ledger never ran it (LedgerUnavailable.not_applied)."""
    return isinstance(exc, LedgerUnavailable) and exc.not_applied


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
                                                      source=order.source, reference=reference)
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
        await note("declined", last4=auth.last4, brand=brand(card), reason=auth.decline_reason)
        return DepositOutcome("declined", auth.decline_reason, last4=auth.last4)
    await note("authorized", last4=auth.last4, brand=brand(card), ref=auth.auth_id)

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
