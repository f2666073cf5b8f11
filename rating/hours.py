"""Calling hours: per-weekday windows in the facility's local wall time."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
_RANGE = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")  # ASCII digits

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
        m = _RANGE.fullmatch(item.strip())
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
    always_open: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "always_open", all(day == ((0, DAY_SECONDS),) for day in self.days))

    def is_open(self, local: dt.datetime) -> bool:
        sec = local.hour * 3600 + local.minute * 60 + local.second
        return any(s <= sec < e for s, e in self.days[local.weekday()])

    def open_stretch(self, at: dt.datetime, tz: ZoneInfo) -> tuple[float, float] | None:
        """(start, close) instants of the open stretch containing `at`; None if closed at `at`.

        Windows that meet at midnight are one stretch. Wall-clock bounds are converted to absolute
        time in `tz`, so DST days are counted in real seconds.
        """
        local = at.astimezone(tz)
        sec = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        window = next(((s, e) for s, e in self.days[weekday] if s <= sec < e), None)
        if window is None:
            return None
        start, end = window
        day = local.date()
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
        opened = (midnight + dt.timedelta(seconds=start)).timestamp()
        for _ in range(8):  # follow windows running on past midnight
            if end < DAY_SECONDS:
                break
            following = self.days[(weekday + 1) % 7]
            if not following or following[0][0] != 0:
                break
            day += dt.timedelta(days=1)
            weekday = (weekday + 1) % 7
            end = following[0][1]
            midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
        return opened, (midnight + dt.timedelta(seconds=end)).timestamp()

    def seconds_until_close(self, at: dt.datetime, tz: ZoneInfo) -> int | None:
        """Whole seconds from `at` until the facility next closes; 0 if closed now; None if never closes."""
        if self.always_open:
            return None
        stretch = self.open_stretch(at, tz)
        if stretch is None:
            return 0
        return max(0, int(stretch[1] - at.timestamp()))


def format_window(window: Window) -> str:
    s, e = window
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}-{e // 3600:02d}:{e % 3600 // 60:02d}"
