"""The delivery worker: an asyncio task that fans new events out, claims due messages under a lease,
applies opt-outs, quiet hours and the rate limit, sends through the channel adapters and records each
outcome. SQL runs in threads; nothing here is awaited by call control.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Connection, Engine

from notify import outbox, rules
from notify.channels import FAILED, OPTED_OUT, RETRY, SENT, UNKNOWN, Channel, Outcome, Outgoing
from notify.journal import derive_ledger_events
from notify.model import CALL, EMAIL, QUIET_CHANNELS, UNFUNDED_ATTEMPT, RecipientDirectory
from notify.templates import render
from notify.unsubscribe import url as unsubscribe_url

log = structlog.get_logger()
HOUR_MS = 3_600_000
LEDGER_LOOKBACK_MS = 24 * HOUR_MS      # a receipt a day late is still worth sending; older is not
Deriver = Callable[[Connection, int], int]   # enqueues events found in SQL (conn, now ms) -> how many


@dataclass(frozen=True)
class NotifyConfig:
    service: str = "AdvancePay"
    help_number: str = ""                  # the 800 number, in texts and HELP replies
    rate_per_hour: int = 5                 # per channel and address
    batch: int = 50
    lease_ms: int = 120_000                # longer than one send's timeout; a dead worker's claims free up
    poll_seconds: float = 1.0
    unsubscribe_base: str = ""
    unsubscribe_secret: str = field(default="", repr=False)
    max_attempts: int = rules.MAX_ATTEMPTS
    call_attempts: int = 3                 # an automated call unanswered this many times is given up


class Worker:
    def __init__(self, engine: Engine, directory: RecipientDirectory, channels: Mapping[str, Channel],
                 config: NotifyConfig | None = None, *, clock: Callable[[], float] = time.time,
                 owner: str | None = None, ledger_events: bool = False,
                 derivers: Sequence[Deriver] = ()) -> None:
        self.engine = engine
        self.directory = directory
        self.channels = dict(channels)
        self.config = config or NotifyConfig()
        self.clock = clock
        self.ledger_events = ledger_events      # derive deposit/refund events from the synced journal
        self.derivers = tuple(derivers)         # more events from SQL (holders' low balance), same step
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def _now(self) -> int:
        return int(self.clock() * 1000)

    def _tx_fan_out(self) -> int:
        with self.engine.begin() as conn:
            if self.ledger_events:
                derive_ledger_events(conn, since_ms=self._now() - LEDGER_LOOKBACK_MS)
            for derive in self.derivers:
                derive(conn, self._now())
            return outbox.fan_out(conn, self.directory, at_ms=self._now(),
                                  fallback_to_number=(UNFUNDED_ATTEMPT,))

    def _tx_claim(self) -> list[outbox.Claimed]:
        with self.engine.begin() as conn:
            return outbox.claim(conn, self.owner, limit=self.config.batch, lease_ms=self.config.lease_ms,
                                channels=tuple(self.channels), at_ms=self._now())

    async def run_once(self) -> int:
        """Fan out, claim one batch, send it; returns messages claimed."""
        await asyncio.to_thread(self._tx_fan_out)
        batch = await asyncio.to_thread(self._tx_claim)
        groups: dict[tuple[str, str], list[outbox.Claimed]] = {}
        for m in batch:      # one address's messages in turn, so its rate limit sees each send
            groups.setdefault((m.channel, m.address), []).append(m)
        await asyncio.gather(*(self._deliver_all(ms) for ms in groups.values()))
        return len(batch)

    async def _deliver_all(self, batch: list[outbox.Claimed]) -> None:
        for m in batch:
            await self._deliver(m)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a database or provider failure is logged and retried, never raised."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:
                log.warning("notify_round_failed", error=type(exc).__name__)
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_seconds)

    # --- one message --------------------------------------------------------------------------------
    def _hold(self, m: outbox.Claimed, now: int) -> tuple[str, int] | None:
        """(reason, until) when quiet hours hold the message."""
        if m.channel in QUIET_CHANNELS:
            until = rules.quiet_until_ms(now, m.time_zone, m.quiet_start, m.quiet_end)
            if until is not None:
                return "quiet_hours", until
        return None

    def _tx_gate(self, m: outbox.Claimed, now: int) -> str | None:
        """Opt-out, quiet hours and rate limit, recorded at once; None when the message may go now."""
        with self.engine.begin() as conn:
            if outbox.is_opted_out(conn, m.channel, m.address):
                outbox.mark_skipped(conn, m.message_id, self.owner, "opted_out", now)
                return "opted_out"
            held = self._hold(m, now)
            if held is None:
                recent = outbox.sent_since(conn, m.channel, m.address, now - HOUR_MS)
                if len(recent) >= self.config.rate_per_hour:
                    held = ("rate_limited", recent[0] + HOUR_MS)
            if held is not None:
                outbox.mark_retry(conn, m.message_id, self.owner, at_ms=now, next_ms=held[1], reason=held[0],
                                  counts=False)
                return held[0]
            return None

    def outgoing(self, m: outbox.Claimed) -> Outgoing:
        c = self.config
        text = render(m.event.kind, m.language, m.event.payload, time_zone=m.time_zone, service=c.service,
                      help_number=c.help_number)
        unsubscribe = ""
        if m.channel == EMAIL and c.unsubscribe_base and c.unsubscribe_secret:
            unsubscribe = unsubscribe_url(c.unsubscribe_base, c.unsubscribe_secret, m.channel, m.address)
        return Outgoing(m.message_id, m.address, m.language, text.subject,
                        text.email_text(m.language, unsubscribe) if m.channel == EMAIL else text.text,
                        text.email_html(m.language, unsubscribe) if m.channel == EMAIL else "",
                        unsubscribe, m.first_attempt_ts, m.event.kind, m.event.payload)

    async def _deliver(self, m: outbox.Claimed) -> None:
        try:
            if await asyncio.to_thread(self._tx_gate, m, self._now()) is not None:
                return
            channel = self.channels[m.channel]
            out = self.outgoing(m)
            if m.uncertain:
                exclude = await asyncio.to_thread(self._tx_provider_ids, m)
                earlier = await channel.lookup(out, exclude)
                if earlier:
                    await asyncio.to_thread(self._tx_record, m, Outcome(SENT, provider_id=earlier))
                    return
            outcome = await channel.send(out)
        except Exception as exc:        # a lookup or render failure: try again later, like a transient error
            outcome = Outcome(RETRY, error=type(exc).__name__)
        try:
            await asyncio.to_thread(self._tx_record, m, outcome)
        except Exception as exc:
            # Not recorded: the lease runs out and the message is claimed again as uncertain.
            log.warning("notify_record_failed", message=m.message_id, error=type(exc).__name__)

    def _tx_provider_ids(self, m: outbox.Claimed) -> set[str]:
        with self.engine.begin() as conn:
            return outbox.provider_ids(conn, m.channel, m.address)

    def _tx_record(self, m: outbox.Claimed, outcome: Outcome) -> None:
        now = self._now()
        with self.engine.begin() as conn:
            if outcome.kind == SENT:
                outbox.mark_sent(conn, m.message_id, self.owner, outcome.provider_id, now)
            elif outcome.kind == OPTED_OUT:
                outbox.set_opt_out(conn, m.channel, m.address, True, "provider", now)
                outbox.mark_failed(conn, m.message_id, self.owner, "opted_out", outcome.error, now)
            elif outcome.kind == FAILED:
                outbox.mark_failed(conn, m.message_id, self.owner, "permanent", outcome.error, now)
            elif m.attempts >= (self.config.call_attempts if m.channel == CALL else self.config.max_attempts):
                outbox.mark_failed(conn, m.message_id, self.owner, "gave_up", outcome.error, now)
            else:
                delay = max(rules.backoff_ms(m.attempts), outcome.retry_after_ms)
                outbox.mark_retry(conn, m.message_id, self.owner, at_ms=now, next_ms=now + delay,
                                  reason=outcome.kind, error=outcome.error, uncertain=outcome.kind == UNKNOWN)
        log.info("notify_outcome", message=m.message_id, channel=m.channel, outcome=outcome.kind,
                 attempt=m.attempts)
