"""Pure call-flow decisions: no I/O, no clock, no Asterisk. The flows sequence; these decide.

Everything here takes plain values and returns plain values so that every branch of the call flow can be
tested without sockets, Redis or a simulator.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from rating.facility import ID_PATTERN


class Outcome(StrEnum):
    """What the call record says happened to an attempt (ledger call record `outcome`)."""

    COMPLETED = "completed"
    REFUSED = "refused"          # recipient pressed 2, stayed silent, or hung up during screening
    BLOCKED = "blocked"          # recipient pressed 9 (number now blocked for the facility)
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"  # CHANUNAVAIL / CONGESTION
    UNFUNDED = "unfunded"        # no AdvancePay account, or less than the minimum to connect
    DENIED = "denied"            # policy said no before dialling; see reason
    FAILED = "failed"            # our side could not serve the call (Redis, rating, protocol)


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal before dialling: the prompt the inmate hears, the record outcome and reason code."""

    reason: str
    prompt: str
    outcome: Outcome = Outcome.DENIED


# Rating's NumberRefused codes -> what the inmate hears.
_NUMBER_REFUSALS: dict[str, str] = {
    "invalid": "number_invalid",
    "too_long": "number_invalid",
    "premium": "number_premium",
    "toll_free": "number_toll_free",
    "short_code": "number_short_code",
    "blocked_type": "number_blocked_facility",
}

PIN_INVALID = Denial("pin_invalid", "pin_invalid")
PIN_LOCKED = Denial("pin_locked", "pin_locked")
NO_NUMBER = Denial("no_number", "number_invalid")
BLOCKED_FACILITY = Denial("blocked_facility", "number_blocked_facility")
BLOCKED_RECIPIENT = Denial("blocked_recipient", "number_blocked_recipient")
NOT_ALLOWED = Denial("not_allowed", "number_not_allowed")
OUTSIDE_HOURS = Denial("outside_hours", "outside_hours")
NO_ACCOUNT = Denial("no_account", "no_account", Outcome.UNFUNDED)
INSUFFICIENT_FUNDS = Denial("insufficient_funds", "insufficient_funds", Outcome.UNFUNDED)
SERVICE_UNAVAILABLE = Denial("service_unavailable", "service_unavailable", Outcome.FAILED)
UNKNOWN_FACILITY = Denial("unknown_facility", "service_unavailable", Outcome.FAILED)


def number_refusal(code: str) -> Denial:
    """Map a rating NumberRefused code to the denial; unknown codes fail as invalid (closed)."""
    prompt = _NUMBER_REFUSALS.get(code, "number_invalid")
    return Denial(f"number_{code}" if code in _NUMBER_REFUSALS else "number_invalid", prompt)


def choose_language(offered: tuple[str, ...] | list[str], key: str | None) -> str:
    """Key 1 picks the first offered language, 2 the second...; anything else keeps the first."""
    if not offered:
        return "en"
    if key and key.isascii() and key.isdigit() and 1 <= int(key) <= len(offered):
        return offered[int(key) - 1]
    return offered[0]


def clean_number(digits: str | None, max_digits: int = 15) -> str | None:
    """What the inmate keyed (GET DATA already stripped `#`): ASCII digits only, 1..max_digits, else None."""
    if not digits:
        return None
    digits = digits.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > max_digits:
        return None
    return digits


def record_facility(value: str) -> str:
    """The facility id a call record carries. One that is not a facility id (from the AGI URL) is kept,
    escaped, so the attempt is still recorded: "invalid:" and the value with each UTF-8 byte outside
    [A-Za-z0-9-] as .XX, cut to the ledger's 128 characters; "unknown" when there is none."""
    if not value:
        return "unknown"
    if len(value) <= 128 and re.fullmatch(ID_PATTERN, value):
        return value
    escaped = "".join(c if c.isascii() and (c.isalnum() or c == "-") else
                      "".join(f".{b:02X}" for b in c.encode("utf-8", "surrogatepass")) for c in value)
    return ("invalid:" + escaped)[:128]


# --- PIN lockout -----------------------------------------------------------------------------------

def pin_locked(failures: int, max_failures: int) -> bool:
    """Locked once the consecutive failures within the window reach the limit."""
    return failures >= max_failures


# --- Holds and metering ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HoldPlan:
    """One atomic hold sized for the longest call the balance, the facility and the curfew allow."""

    seconds: int          # max call duration (the Dial L() limit)
    amount: int           # cents held = quote.cost(seconds)
    lease_seconds: int    # max duration + ring + screening margin: the reaper's backstop
    warning_seconds: int  # L() warning this long before the end (0: none)


def plan_hold(max_seconds: int, amount: int, *, ring_timeout: int, screening_margin: int,
              warning_seconds: int, lease_slack: int = 60) -> HoldPlan | None:
    """None when the balance does not buy a single second (the caller hears insufficient_funds)."""
    if max_seconds <= 0 or amount <= 0:
        return None
    warning = warning_seconds if 0 < warning_seconds < max_seconds else 0
    lease = max_seconds + ring_timeout + screening_margin + lease_slack
    return HoldPlan(seconds=max_seconds, amount=amount, lease_seconds=lease, warning_seconds=warning)


def billed_seconds(accepted_at: float | None, ended_at: float) -> int:
    """Whole seconds from acceptance to hangup; any accepted moment bills at least one second."""
    if accepted_at is None:
        return 0
    return max(1, math.floor(ended_at - accepted_at + 1e-9))


def increments_started(accepted_at: float, now: float, increment_seconds: int) -> int:
    """How many billing increments a hang-up at `now` pays for: those `billed_seconds` reaches into.

    An increment begins to be billable once its first whole second has passed (the first at
    acceptance, since any accepted moment bills a second), so metering never captures an increment
    that the settlement's cost of the billed seconds would not include.
    """
    if now < accepted_at:
        return 0
    return (billed_seconds(accepted_at, now) - 1) // increment_seconds + 1


def capture_due_at(accepted_at: float, k: int, increment_seconds: int) -> float:
    """When increment k (1-based) is captured: at acceptance for the first, and one second into
    each later one (a call that ends inside that second is billed (k-1) increments, not k)."""
    if k <= 1:
        return accepted_at
    return accepted_at + (k - 1) * increment_seconds + 1


def final_total(cost_of_billed: int, captured: int, hold_amount: int) -> int:
    """What the settlement charges: the exact cost, never below what was already captured (captures
    are final) and never above the hold (the L() limit makes the hold the most a call can cost)."""
    return max(captured, min(cost_of_billed, hold_amount))


# --- Screening -----------------------------------------------------------------------------------------

class ScreenAction(StrEnum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    BLOCK = "block"
    REPEAT = "repeat"
    NONE = "none"       # silence
    INVALID = "invalid"  # any other key: counts as a try


def screen_action(key: str | None) -> ScreenAction:
    return {
        "1": ScreenAction.ACCEPT,
        "2": ScreenAction.REFUSE,
        "9": ScreenAction.BLOCK,
        "*": ScreenAction.REPEAT,
    }.get(key or "", ScreenAction.NONE if not key else ScreenAction.INVALID)


class ScreenResult(StrEnum):
    """What the recipient decided, stored in call state for the inmate side and for settlement."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    BLOCKED = "blocked"
    NO_INPUT = "no_input"
    HANGUP = "hangup"
    CALLER_GONE = "caller_gone"   # the inmate hung up before the recipient's decision could connect


def screen_verdict(keys: list[str | None], max_tries: int = 3) -> ScreenResult | None:
    """Fold the keys pressed over the tries (one per prompt cycle) into the recipient's decision, or
    None while it is still open.

    Silence, unknown keys and `*` (hear it again) each use a try, so a recipient cannot hold the line
    forever; the tries running out refuses.
    """
    decided = {ScreenAction.ACCEPT: ScreenResult.ACCEPTED, ScreenAction.REFUSE: ScreenResult.REFUSED,
               ScreenAction.BLOCK: ScreenResult.BLOCKED}
    for tries, key in enumerate(keys, 1):
        result = decided.get(screen_action(key))
        if result is not None:
            return result
        if tries >= max_tries:
            return ScreenResult.NO_INPUT
    return None


# --- After Dial -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DialVerdict:
    outcome: Outcome
    prompt: str | None   # what the inmate hears after Dial returns (None: channel gone / nothing)
    reason: str = ""


def dial_verdict(dialstatus: str | None, screen: str | None, *, limit_reached: bool = False,
                 capped_by_funds: bool = False, funds_cut: bool = False) -> DialVerdict:
    """Classify a Dial from DIALSTATUS and what the screening recorded in call state.

    The screen result wins over DIALSTATUS: a refusal comes back from Asterisk as BUSY (GOSUB_RESULT),
    so only call state tells a refusal from a real busy line.
    """
    status = (dialstatus or "").upper()
    if screen == ScreenResult.ACCEPTED:
        if funds_cut or (limit_reached and capped_by_funds):
            return DialVerdict(Outcome.COMPLETED, "call_ended_funds", "funds")
        return DialVerdict(Outcome.COMPLETED, "goodbye", "limit" if limit_reached else "")
    if screen == ScreenResult.BLOCKED:
        return DialVerdict(Outcome.BLOCKED, "call_blocked_by_recipient", "recipient_blocked")
    if screen == ScreenResult.CALLER_GONE:
        return DialVerdict(Outcome.FAILED, None, "caller_hangup")
    if screen in (ScreenResult.REFUSED, ScreenResult.NO_INPUT, ScreenResult.HANGUP):
        return DialVerdict(Outcome.REFUSED, "call_refused", f"recipient_{screen}")
    if status == "ANSWER":
        # Answered but never screened to a decision (caller hung up during screening, or the screen
        # AGI failed): nothing was accepted, so nothing is billed.
        return DialVerdict(Outcome.REFUSED, "call_refused", "screening_incomplete")
    if status == "BUSY":
        return DialVerdict(Outcome.BUSY, "line_busy", "busy")
    if status == "NOANSWER":
        return DialVerdict(Outcome.NO_ANSWER, "call_not_answered", "no_answer")
    if status in ("CHANUNAVAIL", "CONGESTION"):
        return DialVerdict(Outcome.UNAVAILABLE, "call_not_answered", status.lower())
    if status == "CANCEL":
        return DialVerdict(Outcome.FAILED, None, "caller_hangup")
    return DialVerdict(Outcome.FAILED, "service_unavailable", status.lower() or "dial_failed")


def dial_limits(max_seconds: int, warning_seconds: int) -> str:
    """Dial's L(x[:y]) option in milliseconds."""
    if warning_seconds:
        return f"L({max_seconds * 1000}:{warning_seconds * 1000})"
    return f"L({max_seconds * 1000})"


def dial_args(template: str, e164: str, ring_timeout: int, call_id: str, max_seconds: int,
              warning_seconds: int) -> str:
    """The Dial application's argument string, digits of the E.164 number into the template."""
    digits = e164.lstrip("+")
    target = template.format(number=digits)
    return f"{target},{ring_timeout},U(screen-sub^{call_id}){dial_limits(max_seconds, warning_seconds)}"
