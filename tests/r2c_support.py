"""Holders with verified numbers for the Request2Call tests, made through the real claim/verify path."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Engine

from holders import Registry
from holders.access import Actor
from holders.ledgerport import BlockingLedger

STAFF = Actor.support("test")
SECRET = "r2c-test-secret-0123456789"


class Phone:
    """A code sender that keeps the last code (the test reads it like the holder would)."""

    last = ""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        self.last = code


def holder_with(engine: Engine, redis_url: str, facility: str, *numbers: str, language: str = "en") -> str:
    """A new active holder who verified each of `numbers` at `facility`; returns the holder id."""
    phone = Phone()
    ledger = BlockingLedger(redis_url)
    try:
        reg = Registry(engine, secret=SECRET, sender=phone, ledger=ledger)
        holder = reg.create(STAFF, name="Pat Doe", email=f"pat{secrets.token_hex(4)}@example.com",
                            mobile="+13125550142", language=language).holder_id
        for number in numbers:
            reg.claim(STAFF, holder, facility, number, "sms")
            reg.verify(STAFF, holder, facility, number, phone.last)
        return holder
    finally:
        closer: Any = getattr(ledger, "close", None)
        if closer is not None:
            closer()
