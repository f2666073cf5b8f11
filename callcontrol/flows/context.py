"""What every call flow shares within one controller process: one ledger, one catalog, one policy,
one Redis call store, one meter, one clock, the optional AMI client, and the calls this process runs."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callcontrol.call_state import CallState
from callcontrol.flows.ports import CatalogPort, ClockPort, LedgerPort, MeterPort, Speech, Store
from callcontrol.platform.config import Settings
from callcontrol.policy import Policy
from rating import Quote

if TYPE_CHECKING:
    from callcontrol.asterisk.ami import AMIClient
    from callcontrol.flows.hangup import Ended
    from callcontrol.holder_data import HolderData
    from payments.gateway import PaymentGateway

SETTLE_CONCURRENCY = 256


def iso(ts: float) -> str:
    """Epoch seconds (clock time) -> ISO-8601 UTC as the call record wants; 0 means unknown ("")."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def new_call_id(now: float) -> str:
    """Sortable by time, unique without coordination; valid as a ledger op/hold id and in a dialplan."""
    return f"c{int(now * 1000):x}{secrets.token_hex(5)}"


@dataclass
class FlowContext:
    settings: Settings
    clock: ClockPort
    ledger: LedgerPort
    catalog: CatalogPort
    policy: Policy
    store: Store
    meter: MeterPort
    speech: Speech
    ami: AMIClient | None = None
    gateway: PaymentGateway | None = None    # the card processor (deposit line, one paid call)
    instance: str = ""
    names_dir: str = ""
    screening_margin: int = 120          # seconds of answer + screening allowed for in the hold's lease
    name_record_ms: int = 5000
    pin_tries: int = 3
    screen_tries: int = 3
    # called with every call record written (demo narration, tests); None in production
    on_record: Callable[[dict[str, Any]], None] | None = None
    # schedules the unfunded-attempt notice without waiting (callcontrol/notices.py); None: no notices
    unfunded_notice: Callable[..., None] | None = None
    # Request2Call and the 800 line's account menu (callcontrol/holder_data.py); None: neither
    holder_data: HolderData | None = None
    # call_id -> done event of an inmate session running on this process
    sessions: dict[str, asyncio.Event] = field(default_factory=dict)
    # caller channel -> call id, for calls this process meters without a session (recovered)
    orphans: dict[str, str] = field(default_factory=dict)
    # caller channel -> call id while its inmate session waits in EXEC Dial: Asterisk tells the AGI of a
    # caller's hang-up only when Dial returns, AMI tells it at once (HangupRequest)
    dialling: dict[str, str] = field(default_factory=dict)
    # caller channel -> the called channel Dial created (AMI DialBegin): the recipient's leg, hung up
    # when the caller leaves during screening instead of hearing the whole announcement out
    dial_legs: dict[str, str] = field(default_factory=dict)
    # call id -> its end (flows.hangup.Ended), for settlements that failed (Redis down): retried with it
    unsettled: dict[str, Ended] = field(default_factory=dict)
    # settlements in progress at once: when every call ends together (a trunk failure) the rest wait
    # their turn, so each loop turn and each Redis pipeline stays small (docs/performance.md)
    settling: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SETTLE_CONCURRENCY))
    _quotes: dict[tuple[str, str, float], Quote] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lock(self, call_id: str) -> asyncio.Lock:
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        return lock

    def release_lock(self, call_id: str) -> None:
        lock = self._locks.get(call_id)
        if lock is not None and not lock.locked():
            del self._locks[call_id]

    def quote_for(self, state: CallState) -> Quote:
        """The call's quote, re-derived from what was dialled and when (rating is deterministic), so an
        instance that did not authorize the call prices it exactly as the one that did."""
        key = (state.facility_id, state.dialled, state.quoted_at)
        quote = self._quotes.get(key)
        if quote is None:
            at = datetime.fromtimestamp(state.quoted_at, tz=UTC)
            quote = self.catalog.quote(state.facility_id, state.dialled, at=at)
            if len(self._quotes) > 50_000:
                self._quotes.clear()
            self._quotes[key] = quote
        return quote

    def remember_quote(self, state: CallState, quote: Quote) -> None:
        self._quotes[(state.facility_id, state.dialled, state.quoted_at)] = quote

    def forget_quote(self, state: CallState) -> None:
        self._quotes.pop((state.facility_id, state.dialled, state.quoted_at), None)

    def name_path(self, call_id: str) -> str:
        base = self.names_dir or str(Path(self.settings.recording_dir) / "names")
        return f"{base}/{call_id}"
