"""The SQL roster: an import is one transaction (all rows or none), every change bumps the facility's
version, and a controller polls the versions (one small query) to reload only what changed."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from callcontrol.policy import Inmate, is_pin_hash

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
COLUMNS = ("inmate_id", "name", "language", "active", "allowed_numbers", "pin_hash")
TRUE, FALSE = {"1", "true", "yes", "y", "active"}, {"0", "false", "no", "n", "inactive", "released"}

metadata = sa.MetaData()
inmates = sa.Table(
    "roster_inmates", metadata,
    sa.Column("facility_id", sa.String(40), primary_key=True),
    sa.Column("inmate_id", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("allowed", sa.Text, nullable=False),
    sa.Column("pin_hash", sa.String(200), nullable=True),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
)
versions = sa.Table(
    "roster_versions", metadata,
    sa.Column("facility_id", sa.String(40), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)


class RosterError(ValueError):
    """Bad input: nothing was changed. `problems` names each bad row and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Row:
    inmate_id: str
    name: str
    language: str
    active: bool
    allowed: tuple[str, ...]
    pin_hash: str | None


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` with the scripts in callcontrol/roster/migrations."""
    from ledger.sql import upgrade

    upgrade(url, MIGRATIONS, revision)


def _number(raw: str) -> str | None:
    digits = raw.strip()
    if len(digits) == 10 and digits.isascii() and digits.isdigit():
        return "+1" + digits
    if digits.startswith("+") and 8 <= len(digits) <= 16 and digits[1:].isascii() and digits[1:].isdigit():
        return digits
    return None


def parse_csv(text: str, digits: int) -> list[Row]:
    """Every row of a jail export, checked; RosterError lists each bad row (line number and why)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS[:5] if c not in (reader.fieldnames or [])]
    if missing:
        raise RosterError([f"header: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})"])
    rows: list[Row] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        why: list[str] = []
        inmate_id = (raw.get("inmate_id") or "").strip()
        if not (inmate_id.isascii() and inmate_id.isdigit() and len(inmate_id) == digits):
            why.append(f"inmate_id {inmate_id!r} is not {digits} digits")
        elif inmate_id in seen:
            why.append(f"inmate_id {inmate_id} repeats line {seen[inmate_id]}")
        seen.setdefault(inmate_id, line)
        name = (raw.get("name") or "").strip()
        if not name:
            why.append("name is empty")
        language = (raw.get("language") or "").strip().lower()
        if language and not (len(language) == 2 and language.isascii() and language.isalpha()):
            why.append(f"language {language!r} is not a two-letter code")
        active_raw = (raw.get("active") or "").strip().lower()
        if active_raw not in TRUE | FALSE:
            why.append(f"active {active_raw!r} is not 1/0, yes/no or true/false")
        allowed: list[str] = []
        for part in (raw.get("allowed_numbers") or "").split(";"):
            if part.strip():
                number = _number(part)
                if number is None:
                    why.append(f"allowed number {part.strip()!r} is not E.164 or 10 digits")
                else:
                    allowed.append(number)
        pin_hash = (raw.get("pin_hash") or "").strip() or None
        if pin_hash is not None and not is_pin_hash(pin_hash):
            why.append("pin_hash is not a scrypt$ or pbkdf2_sha256$ hash")     # never echo it
        if why:
            problems.append(f"line {line}: " + "; ".join(why))
        else:
            rows.append(Row(inmate_id, name, language, active_raw in TRUE, tuple(allowed), pin_hash))
    if problems:
        raise RosterError(problems)
    if not rows:
        raise RosterError(["the file has no rows"])
    return rows


def _bump(conn: sa.Connection, facility_id: str) -> None:
    now = conn.execute(sa.select(versions.c.version).where(versions.c.facility_id == facility_id)).scalar()
    if now is None:
        conn.execute(versions.insert().values(facility_id=facility_id, version=1))
    else:
        conn.execute(versions.update().where(versions.c.facility_id == facility_id).values(version=now + 1))


def import_rows(engine: Engine, facility_id: str, rows: list[Row]) -> int:
    """Upsert every row in one transaction; a row without a hash keeps the PIN already stored."""
    now = int(time.time())
    with engine.begin() as conn:
        for row in rows:
            key = (inmates.c.facility_id == facility_id) & (inmates.c.inmate_id == row.inmate_id)
            values: dict[str, Any] = {"name": row.name, "language": row.language, "active": row.active,
                                      "allowed": ";".join(row.allowed), "updated_ts": now}
            if row.pin_hash is not None:
                values["pin_hash"] = row.pin_hash
            if conn.execute(inmates.update().where(key).values(**values)).rowcount == 0:
                conn.execute(inmates.insert().values(facility_id=facility_id, inmate_id=row.inmate_id,
                                                     **{"pin_hash": row.pin_hash, **values}))
        _bump(conn, facility_id)
    return len(rows)


def set_pin(engine: Engine, facility_id: str, inmate_id: str, pin_hash: str) -> bool:
    """Store a new PIN hash for an inmate already on the SQL roster; False if there is none."""
    with engine.begin() as conn:
        key = (inmates.c.facility_id == facility_id) & (inmates.c.inmate_id == inmate_id)
        done = conn.execute(inmates.update().where(key).values(pin_hash=pin_hash,
                                                               updated_ts=int(time.time()))).rowcount
        if done:
            _bump(conn, facility_id)
    return bool(done)


def current_versions(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(versions.c.facility_id, versions.c.version))
        return {str(f): int(v) for f, v in rows}


def load(engine: Engine, facility_id: str) -> dict[str, Inmate]:
    """The facility's SQL roster as policy entries (a row without a PIN hash gets an empty one)."""
    with engine.connect() as conn:
        result = conn.execute(sa.select(inmates).where(inmates.c.facility_id == facility_id))
        return {r.inmate_id: Inmate(facility_id=facility_id, number=r.inmate_id, name=r.name,
                                    pin_hash=r.pin_hash or "", language=r.language, active=bool(r.active),
                                    allowed=frozenset(a for a in r.allowed.split(";") if a))
                for r in result}
