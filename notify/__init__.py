"""Notifications: one durable outbox in SQL and its channels (SMS over an HTTP provider, email over SMTP).
docs/notifications.md tells the whole story."""

from notify.model import (
    CHANNELS,
    KINDS,
    BadEvent,
    Event,
    Recipient,
    RecipientDirectory,
    StaticDirectory,
)
from notify.outbox import enqueue
from notify.unfunded import unfunded_attempt
from notify.worker import NotifyConfig, Worker

__all__ = ["CHANNELS", "KINDS", "BadEvent", "Event", "NotifyConfig", "Recipient", "RecipientDirectory",
           "StaticDirectory", "Worker", "enqueue", "unfunded_attempt"]
