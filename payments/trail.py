"""The deposit trail in Redis (`apc:deposit:<key>`): who, how much, the state of the saga, the last four
digits and the gateway's authorization id; what an operator reconciles from. No other card data.

Every write is first appended to the journal stream `apc:paytrail` (one entry per transition, JSON in
field "e"), then applied to the hash; payments/trail_sync.py copies the journal into SQL
(payment_attempts / payment_transitions) exactly once. Journal first: a transition the hash holds is
always in the journal (a crash in between leaves the journal with one the hash lacks, which SQL then
shows as a stuck attempt for reconciliation, never a charge without its record)."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from payments.saga import DepositOrder

DEPOSIT_KEY = "apc:deposit:{}"          # hash: facility, number, account, amount, last4, ref, state
DEPOSIT_TTL = 30 * 86400
JOURNAL_KEY = "apc:paytrail"            # stream: one entry per trail write, field "e" (JSON)
CHANNEL = "phone"                       # the journal's channel kind for the 800 line
MAX_ATTEMPTS = 9                        # new keys per channel and account after closed attempts
# Trail states of an attempt that ended with nothing charged and nothing credited: a new deposit on the
# same channel needs a new gateway key (a replay would return the voided authorization).
CLOSED_STATES = frozenset({"declined", "voided", "gateway_failed", "reversed"})
# Trail states nothing may overwrite (a later run on the same key must not rewrite what happened).
FINAL_STATES = CLOSED_STATES | {"captured"}
_FINAL_ARG = "|" + "|".join(sorted(FINAL_STATES)) + "|"       # what the script searches for "|state|"
RECORD_LUA = resources.files("payments").joinpath("lua", "record_trail.lua").read_text()


class DepositTrail:
    """Trail reads and writes on an async redis-py client ``r``; ``now`` stamps each write."""

    def __init__(self, r: Any, now: Callable[[], float], gateway: str = "") -> None:
        self.r = r
        self.now = now
        self.gateway = gateway          # the processor's name, journalled with the attempt

    async def attempt_key(self, base: str) -> tuple[str, bool] | None:
        """The gateway key of this attempt, and whether it replays an earlier one; None when every key
        is used. A re-run with ``base`` replays the earlier attempt's key (one authorization, one
        posting) unless that attempt is closed (declined, voided...): replaying a voided authorization
        would credit without charging, so a closed attempt's successor gets a new key ``<base>-2``,
        ``-3``... Redis down: raises (fail closed, nothing charged)."""
        for n in range(1, MAX_ATTEMPTS + 1):
            key = base if n == 1 else f"{base}-{n}"
            state = await self.r.hget(DEPOSIT_KEY.format(key), "state")
            if isinstance(state, bytes):
                state = state.decode()
            if state is None:
                return key, False
            if state not in CLOSED_STATES:
                return key, True
        return None

    async def record(self, order: DepositOrder, state: str, fields: dict[str, str]) -> None:
        """Journal, then write ``state`` and ``fields``. A final state (captured, voided, declined...) is
        never overwritten, and who/how much are written once (one Lua script, atomic). Redis down:
        raises (the journal entry and the hash both belong to this Redis)."""
        key = DEPOSIT_KEY.format(order.key)
        mapping = {"state": state, "updated": f"{self.now():.3f}", **fields}
        once: dict[str, str] = {}
        if state == "authorizing":
            once = {"facility": order.facility_id, "number": order.number_e164,
                    "account": order.account_id, "amount": str(order.cents)}
        entry = {"key": order.key, "channel": CHANNEL, "gateway": self.gateway, "facility": order.facility_id,
                 "number": order.number_e164, "account": order.account_id, "amount": order.cents, **mapping}
        await self.r.xadd(JOURNAL_KEY, {"e": json.dumps(entry, separators=(",", ":"))})
        args = [str(DEPOSIT_TTL), _FINAL_ARG, str(len(mapping))]
        for k, v in [*mapping.items(), *once.items()]:
            args += [k, v]
        await self.r.eval(RECORD_LUA, 1, key, *args)
