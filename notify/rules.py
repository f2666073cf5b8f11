"""Pure timing rules: back-off between attempts, quiet hours in the recipient's zone."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BACKOFF_BASE_MS = 30_000
BACKOFF_CAP_MS = 3_600_000
MAX_ATTEMPTS = 10


def backoff_ms(attempts: int, rng: random.Random | None = None) -> int:
    """Exponential (30 s, 1 min, 2 min ... capped at 1 h) with jitter in [50 %, 100 %]: retries of many
    messages after one provider outage spread out instead of arriving together."""
    ceiling = min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** max(0, attempts - 1))
    return int(ceiling * (rng or random).uniform(0.5, 1.0))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until_ms(now_ms: int, time_zone: str, start: int, end: int) -> int | None:
    """If `now` falls in the quiet window [start, end) (local minutes; may wrap midnight), when it ends."""
    if start == end:
        return None
    local = datetime.fromtimestamp(now_ms / 1000, tz=zone(time_zone))
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    ends = day + timedelta(minutes=end)
    if ends <= local:
        ends += timedelta(days=1)
    return int(ends.timestamp() * 1000)
