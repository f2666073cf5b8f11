"""How a code reaches a phone. A code never goes through notify's SQL outbox (a code must never reach SQL,
Redis or a log): it is sent at once, in memory, through notify's SMS adapter.

`holder_code_sender` names the sender:
- `sms`: `SmsCodeSender`, through the provider the `notify_sms_*` settings configure (Twilio or the
  generic webhook, notify/sms.py), with the verification-code text of notify/templates.py in the
  holder's language. A transient provider error is retried once at once; any other outcome (refused,
  opted out, a timeout whose result is unknown) raises, and the claim fails. SMS only: a code by
  automated call is refused before any code is made (the alert call cannot speak a code yet, and its
  channel variables would carry the code through AMI and Asterisk's logs).
- `dev` (development only): the code goes to the log, in the one event (`dev_code`) the redactor lets
  a code through.
- empty: no sender; claims are refused.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import structlog

from notify.channels import RETRY, SENT, Channel, Outcome, Outgoing
from notify.model import VERIFICATION_CODE
from notify.templates import render

CHANNELS = ("sms", "call")
log = structlog.get_logger()
T = TypeVar("T")


class CodeSender(Protocol):
    """A sender may also have `channels`, the subset of CHANNELS it delivers by (default: all); the
    Registry refuses a claim by any other channel before making a code."""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        """Send `code` to `number`; raise on failure (the code is then never usable)."""


class CodeNotSent(Exception):
    """The provider did not take the message. The text says why in outcome and status codes only."""


class DevCodeSender:
    """Development only: the code goes to the log as `dev_code`."""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        log.warning("dev_code", number=number, channel=channel, language=language, dev_code=code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to the end from synchronous code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class SmsCodeSender:
    """The code by SMS, straight through a notify SMS adapter (no outbox, nothing stored or logged)."""

    channels = ("sms",)
    MAX_RETRY_WAIT_MS = 2_000

    def __init__(self, channel_factory: Callable[[], Channel], *, service: str = "AdvancePay",
                 help_number: str = "", clock: Callable[[], float] = time.time) -> None:
        self._factory = channel_factory    # a fresh adapter per code: its HTTP client is per event loop
        self._service = service
        self._help = help_number
        self._clock = clock

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        if channel not in self.channels:
            raise CodeNotSent(f"channel {channel}: codes go by sms only")
        text = render(VERIFICATION_CODE, language, {"code": code}, service=self._service,
                      help_number=self._help)
        msg = Outgoing("code-" + secrets.token_hex(12), number, language, text.subject, text.text,
                       first_attempt_ms=int(self._clock() * 1000), kind=VERIFICATION_CODE)
        outcome = _run(self._send(msg))
        if outcome.kind != SENT:
            raise CodeNotSent(f"sms {outcome.kind}: {outcome.error}")

    async def _send(self, msg: Outgoing) -> Outcome:
        sms = self._factory()
        try:
            outcome = await sms.send(msg)
            if outcome.kind == RETRY and outcome.retry_after_ms <= self.MAX_RETRY_WAIT_MS:
                await asyncio.sleep(max(outcome.retry_after_ms, 200) / 1000)
                outcome = await sms.send(msg)     # same message id: the webhook's idempotency key
            return outcome
        finally:
            close = getattr(sms, "close", None)
            if close is not None:
                await close()


def sender_for(name: str, settings: Any = None) -> CodeSender | None:
    """The sender a `holder_code_sender` setting names; empty: none (claims are refused). `sms` reads
    the notify_sms_* settings from `settings`."""
    if name == "dev":
        return DevCodeSender()
    if name == "sms":
        from notify.cli import config
        if getattr(settings, "notify_sms_provider", "") not in ("twilio", "webhook"):
            raise ValueError("holder_code_sender 'sms' needs notify_sms_provider (twilio or webhook)")
        notify = config(settings)
        return SmsCodeSender(lambda: _sms(settings), service=notify.service, help_number=notify.help_number)
    if name:
        raise ValueError(f"holder_code_sender: unknown sender {name!r} (sms or dev)")
    return None


def _sms(settings: Any) -> Channel:
    from notify.cli import sms_channel
    found = sms_channel(settings)
    assert found is not None
    return found
