"""Calling hours: per-weekday windows in the facility's local wall time."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
_RANGE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

Window = tuple[int, int]  # [start, end) in seconds after local midnight


def parse_day(value: object) -> tuple[Window, ...]:
    """'07:00-23:00', 'closed', or a list of ranges -> sorted windows. Raises ValueError with the problem."""
    if value == "closed":
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ValueError(f'must be "HH:MM-HH:MM", "closed" or a list of ranges, got {value!r}')
    windows: list[Window] = []
    for item in items:
        m = _RANGE.match(item.strip())
        if not m:
            raise ValueError(f'{item!r} is not a range like "07:00-22:00"')
        start = int(m[1]) * 3600 + int(m[2]) * 60
        end = int(m[3]) * 3600 + int(m[4]) * 60
        if start >= DAY_SECONDS or end > DAY_SECONDS:
            raise ValueError(f"{item!r}: times run from 00:00 to 24:00")
        if end <= start:
            raise ValueError(f"{item!r}: end must be after start (split overnight hours over two days)")
        windows.append((start, end))
    windows.sort()
    for (_, end), (start, _) in itertools.pairwise(windows):
        if start < end:
            raise ValueError(f"ranges overlap in {items!r}")
    return tuple(windows)


@dataclass(frozen=True, slots=True)
class CallingHours:
    """Seven days (Monday first) of open windows, interpreted in the facility's time zone."""

    days: tuple[tuple[Window, ...], ...]

    @property
    def always_open(self) -> bool:
        return all(day == ((0, DAY_SECONDS),) for day in self.days)

    def is_open(self, local: dt.datetime) -> bool:
        sec = local.hour * 3600 + local.minute * 60 + local.second
        return any(s <= sec < e for s, e in self.days[local.weekday()])

    def seconds_until_close(self, at: dt.datetime, tz: ZoneInfo) -> int | None:
        """Whole seconds from `at` until the facility next closes; 0 if closed now; None if never closes.

        Windows that meet at midnight are one open stretch. The close instant is the local wall-clock
        end converted to an absolute time, so DST days are counted in real seconds.
        """
        if self.always_open:
            return None
        local = at.astimezone(tz)
        sec = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        end = next((e for s, e in self.days[weekday] if s <= sec < e), None)
        if end is None:
            return 0
        day = local.date()
        for _ in range(8):  # follow windows running into the next day
            if end < DAY_SECONDS:
                break
            day += dt.timedelta(days=1)
            weekday = (weekday + 1) % 7
            first = self.days[weekday][0] if self.days[weekday] else None
            if not first or first[0] != 0:
                end = DAY_SECONDS
                day -= dt.timedelta(days=1)
                break
            end = first[1]
        close = dt.datetime(day.year, day.month, day.day, tzinfo=tz) + dt.timedelta(seconds=end)
        remaining = close.timestamp() - at.timestamp()
        return max(0, int(remaining))


def format_window(window: Window) -> str:
    s, e = window
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}-{e // 3600:02d}:{e % 3600 // 60:02d}"
