"""Automated alert calls, callcontrol's half: the AMI `Originator` notify's call channel is handed
(notify imports nothing of callcontrol), and the FastAGI script `alert` that [apc-alerts] runs on the
answered call: the alert in the recipient's language, the balance spoken by callcontrol/speech.py, and
"press 1 to make a deposit now", which sets APC_ALERT_CHOICE=deposit for the dialplan's Goto into
[deposit-line]. Numbers and money are spoken from integer cents in channel variables; no secret travels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from callcontrol import speech
from callcontrol.asterisk.agi import AGIChannel
from callcontrol.asterisk.ami import AMIClient, AMIError

log = structlog.get_logger()
CONTEXT = "apc-alerts"
REPEATS = 2                     # the message is offered this many extra times on * (or silence)
WAIT_MS = 5000
# OriginateResponse Reason (Asterisk's AST_CONTROL_* of the dialled leg): 4 answered, 5 busy, 3/1 no answer
_REASONS = {"4": "answered", "5": "busy", "8": "busy", "3": "no_answer", "1": "no_answer"}


class AmiOriginator:
    """Originate Local/<digits>@apc-outbound (the dial template) into [apc-alerts],s,1 and wait for the
    OriginateResponse: answered, busy, no_answer or failed. `channel_ids`, when given, names each call's
    first channel (AMI ChannelId): every channel of the call then has that Linkedid, so whoever watches
    AMI (the real-Asterisk tests' Switch) can follow it."""

    def __init__(self, ami: AMIClient, *, dial_template: str = "Local/{number}@apc-outbound",
                 ring_seconds: int = 30, caller_id: str = "",
                 channel_ids: Callable[[], str] | None = None) -> None:
        self._ami = ami
        self._template = dial_template
        self._ring = ring_seconds
        self._caller_id = caller_id
        self._channel_ids = channel_ids

    async def originate(self, number: str, variables: Mapping[str, str]) -> tuple[str, str]:
        digits = "".join(ch for ch in number if ch.isdigit())
        if not digits:
            return "failed", ""
        try:
            msg = await self._ami.originate(
                self._template.format(number=digits), context=CONTEXT, exten="s", priority=1,
                variables=dict(variables), timeout_ms=self._ring * 1000, caller_id=self._caller_id or None,
                channel_id=self._channel_ids() if self._channel_ids is not None else None,
                response_timeout=self._ring + 30)
        except AMIError as exc:
            log.warning("alert_call_refused", error=str(exc)[:200])
            return "failed", ""
        ok = (msg.get("Response") or "") == "Success"
        result = "answered" if ok else _REASONS.get(msg.get("Reason") or "", "failed")
        log.info("alert_call", result=result, reason=msg.get("Reason"), message=variables.get("APC_ALERT_ID"))
        return result, msg.get("Uniqueid") or ""


def _cents(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def message(kind: str, lang: str, balance_cents: int | None) -> list[str]:
    """The prompt ids of the alert (before the deposit offer)."""
    if kind == "low_balance":
        return ["alert_low_balance", *(["balance_is", *speech.say_money(balance_cents, lang)]
                                       if balance_cents is not None else [])]
    return ["alert_unfunded"]


async def alert_route(ch: AGIChannel) -> None:
    """[apc-alerts]: say the alert, offer the deposit line on 1, repeat on * or silence, then goodbye."""
    got: dict[str, Any] = {}
    for name in ("APC_ALERT_KIND", "APC_ALERT_LANG", "APC_ALERT_BALANCE_CENTS"):
        got[name] = await ch.get_variable(name)
    lang = got["APC_ALERT_LANG"] if got["APC_ALERT_LANG"] in speech.available_languages() else "en"
    ids = [*message(got["APC_ALERT_KIND"] or "", lang, _cents(got["APC_ALERT_BALANCE_CENTS"])),
           "alert_press_deposit"]
    await ch.answer()
    for _ in range(1 + REPEATS):
        key = ""
        for pid in ids:
            key = await ch.stream_file(speech.prompt(pid, lang), "1*")
            if key:
                break
        if not key:
            key = await ch.wait_for_digit(WAIT_MS)
        if key == "1":
            await ch.set_variable("APC_ALERT_CHOICE", "deposit")
            return
    await ch.stream_file(speech.prompt("goodbye", lang))


async def originator_from_settings(settings: Any) -> AmiOriginator | None:
    """For `callcontrol notify run`: the call channel when the AMI user is configured, else None."""
    if not settings.ami_user:
        return None
    ami = AMIClient(settings.ami_host, settings.ami_port, settings.ami_user, settings.ami_secret,
                    events="call")
    await ami.connect()
    return AmiOriginator(ami, dial_template=settings.dial_template, ring_seconds=settings.ring_timeout)
