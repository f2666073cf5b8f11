"""Strict readers for TOML tables: every error names the file and the dotted field.

TOML floats are parsed as Decimal (never float) so money in data files stays exact.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
import tomllib
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rating.errors import TariffError

_PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise TariffError(path, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise TariffError(path, "", f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                                    f"{exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise TariffError(path, "", f"cannot read: {exc.strerror or exc}") from None


class Table:
    """A TOML table being validated. Unknown keys are refused so typos cannot pass silently.
    (Below its `str`, `int` and `bool` methods, annotations name the builtins as `builtins.str`...)"""

    def __init__(self, data: dict[str, Any], file: str | Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise TariffError(file, prefix, "must be a table")
        self.data = data
        self.file = file
        self.prefix = prefix
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> TariffError:
        return TariffError(self.file, self.name(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ..., *, required: bool = True) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is not ...:
                return default
            if required:
                raise self.error(key, "is required")
            return None
        return self.data[key]

    def str(self, key: str, default: Any = ..., *, pattern: str | None = None,
            choices: Iterable[str] = ()) -> Any:
        value = self.raw(key, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        if pattern and not re.fullmatch(pattern, value):
            raise self.error(key, f"{value!r} does not match the expected form {pattern}")
        choices = tuple(choices)
        if choices and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def int(self, key: builtins.str, default: Any = ..., *, lo: builtins.int | None = None,
            hi: builtins.int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not ...:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if lo is not None and value < lo:
            raise self.error(key, f"must be at least {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.error(key, f"must be at most {hi}, got {value}")
        return value

    def bool(self, key: builtins.str, default: Any = ...) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def decimal(self, key: builtins.str, default: Any = ..., *, places: builtins.int,
                hi: Decimal | None = None) -> Any:
        """A non-negative amount given as a TOML number or a plain decimal string, with <= places decimals."""
        value = self.raw(key, default)
        if value is default and default is not ...:
            return value
        return parse_amount(value, places=places, hi=hi, error=lambda p: self.error(key, p))

    def str_list(self, key: builtins.str, default: Any = ..., *, pattern: builtins.str | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, got {value!r}")
        for item in value:
            if pattern and not re.fullmatch(pattern, item):
                raise self.error(key, f"item {item!r} does not match the expected form {pattern}")
        if len(set(value)) != len(value):
            raise self.error(key, "has duplicate items")
        return value

    def table(self, key: builtins.str, *, required: builtins.bool = True) -> Table | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        return Table(value, self.file, self.name(key))

    def table_list(self, key: builtins.str) -> list[Table]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [Table(v, self.file, f"{self.name(key)}[{i}]") for i, v in enumerate(value)]

    def date_or_datetime(self, key: builtins.str, *,
                         required: builtins.bool = True) -> dt.date | dt.datetime | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise self.error(key, "a date-time must carry a UTC offset (e.g. 2024-11-19T00:00:00-06:00)")
            return value
        if isinstance(value, dt.date):
            return value
        raise self.error(key, f"must be a TOML date or offset date-time, got {value!r}")

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown field (typo?)")


def parse_amount(value: Any, *, places: int, hi: Decimal | None = None, error: Any = None) -> Decimal:
    """Exact non-negative Decimal from an int, a TOML Decimal or a plain string like "0.09"."""

    def fail(problem: str) -> Exception:
        return error(problem) if error else ValueError(problem)

    if isinstance(value, bool):
        raise fail(f"must be an amount, got {value!r}")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if not _PLAIN_DECIMAL.match(text):
            raise fail(f"must be a plain non-negative decimal like \"0.09\", got {value!r}")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise fail(f"not a number: {value!r}") from None
    else:
        raise fail(f"must be an amount, got {value!r}")
    if not amount.is_finite() or amount < 0:
        raise fail(f"must be a finite non-negative amount, got {value}")
    if amount.adjusted() >= 9:
        raise fail(f"{value} is absurdly large")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -places:
        raise fail(f"{value} has more than {places} decimal places")
    if hi is not None and amount > hi:
        raise fail(f"{value} is above the sanity limit {hi}")
    return amount
