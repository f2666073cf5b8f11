"""Typed errors of the rating engine. Callers branch on the type (and NumberRefused.code), not on text."""

from __future__ import annotations

from pathlib import Path


class RatingError(Exception):
    """Base class: the call cannot be rated (no tariff in force, bad argument, ...)."""


class UnknownFacility(RatingError):
    def __init__(self, facility_id: str) -> None:
        super().__init__(f"unknown facility {facility_id!r}")
        self.facility_id = facility_id


class NumberRefused(RatingError):
    """The dialled number cannot be called. ``code`` is one of REFUSAL_CODES."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


REFUSAL_CODES = frozenset({"invalid", "premium", "toll_free", "short_code", "blocked_type", "too_long"})


class TariffError(RatingError):
    """Catalog data (facility, tariff or caps file) is invalid or breaks the caps; names file and field."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {problem}")
