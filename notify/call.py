"""The automated-call channel: an alert spoken on a phone call placed through Asterisk.

notify never imports callcontrol, so the call is placed by an `Originator` the host hands in
(callcontrol/alert_calls.py: AMI Originate into the [apc-alerts] context, whose FastAGI script `alert`
speaks the alert in the recipient's language and offers 1 for the deposit line). Outcomes: answered →
sent; no answer, busy, congestion or a failed originate → retry with the worker's back-off, at most
`NotifyConfig.call_attempts` times. An unanswered or unknown call cannot be looked up afterwards: an
uncertain message is called again (a second ring is better than a lost alert; it is rare: only a worker
killed during a call).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from notify.channels import RETRY, SENT, UNKNOWN, Outcome, Outgoing
from notify.model import CALL

ANSWERED, NO_ANSWER, BUSY, FAILED = "answered", "no_answer", "busy", "failed"
SPOKEN = ("balance_cents", "threshold_cents")     # payload fields the call may speak (never a secret)


class Originator(Protocol):
    async def originate(self, number: str, variables: Mapping[str, str]) -> tuple[str, str]:
        """Call `number` into the alert context; (answered | no_answer | busy | failed, call id)."""
        ...


class CallChannel:
    name = CALL

    def __init__(self, originator: Originator) -> None:
        self._originator = originator

    @staticmethod
    def variables(msg: Outgoing) -> dict[str, str]:
        """What [apc-alerts] needs, as channel variables: ids, kind, language and integer cents."""
        out = {"APC_ALERT_ID": msg.message_id, "APC_ALERT_KIND": msg.kind, "APC_ALERT_LANG": msg.language}
        for key in SPOKEN:
            value = msg.payload.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                out[f"APC_ALERT_{key.upper()}"] = str(value)
        return out

    async def send(self, msg: Outgoing) -> Outcome:
        try:
            result, call_id = await self._originator.originate(msg.address, self.variables(msg))
        except TimeoutError:
            return Outcome(UNKNOWN, error="originate_timeout")
        except (ConnectionError, OSError) as exc:
            return Outcome(RETRY, error=type(exc).__name__)
        if result == ANSWERED:
            return Outcome(SENT, provider_id=call_id)
        return Outcome(RETRY, error=result)

    async def lookup(self, msg: Outgoing, exclude: set[str]) -> str | None:
        return None
