"""What a channel adapter is: it sends one message and says what happened, in one of five outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SENT, RETRY, FAILED, OPTED_OUT, UNKNOWN = "sent", "retry", "failed", "opted_out", "unknown"


@dataclass(frozen=True)
class Outcome:
    kind: str                   # sent | retry (transient) | failed (permanent) | opted_out | unknown
    provider_id: str = ""
    error: str = ""             # for the message's last_error: status codes and provider codes, no secrets
    retry_after_ms: int = 0     # a provider's Retry-After, when it gave one


@dataclass(frozen=True)
class Outgoing:
    message_id: str             # stable across attempts: the idempotency key and the email's Message-ID
    address: str
    language: str
    subject: str
    text: str
    html: str = ""
    unsubscribe_url: str = ""
    first_attempt_ms: int = 0
    kind: str = ""              # the event's kind and payload: what an automated call speaks
    payload: Mapping[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    name: str

    async def send(self, msg: Outgoing) -> Outcome: ...

    async def lookup(self, msg: Outgoing, exclude: set[str]) -> str | None:
        """The provider id of an earlier attempt at `msg` that arrived, if the provider can tell."""
        ...
