"""Who may call whom: inmates, hashed PINs, allowed lists, privileged and facility-blocked numbers.

Loaded once from facility_data/policy/*.toml and kept in memory (the hot path does no file or network
I/O for policy). A file with `facility = "FAC-07"` describes one facility; a file without `facility`
holds numbers that apply everywhere (e.g. attorneys, the public defender).

The inmate keys one entry on the phone: their inmate number (`inmate_number_digits` digits) followed by
their passcode. The number says whose hash to check, so a PIN is checked against one salted hash only.
PINs are stored as `scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>` (or `pbkdf2_sha256$<iterations>$<salt
hex>$<hash hex>`); the plaintext never leaves this module and is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_SCRYPT_N = 2 ** 14


class PolicyError(ValueError):
    """A policy file is malformed: refuse to start rather than run with a half-read policy."""


@dataclass(frozen=True)
class Inmate:
    facility_id: str
    number: str                    # inmate (booking) number as keyed on the phone
    name: str
    pin_hash: str = field(repr=False)
    allowed: frozenset[str] = frozenset()
    active: bool = True
    language: str = ""
    allowed_only: bool = False     # this inmate may call only their allowed list (court order etc.)


@dataclass(frozen=True)
class FacilityPolicy:
    facility_id: str
    inmate_number_digits: int = 4
    require_allowed_list: bool = False
    pin_max_failures: int = 3
    pin_failure_window_seconds: int = 900
    blocked_numbers: frozenset[str] = frozenset()
    privileged_numbers: frozenset[str] = frozenset()
    inmates: dict[str, Inmate] = field(default_factory=dict)


def hash_pin(pin: str, *, salt: bytes | None = None, n: int = DEFAULT_SCRYPT_N, r: int = 8,
             p: int = 1) -> str:
    """Hash a PIN for a policy file (per-inmate random salt, scrypt)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def is_pin_hash(text: str) -> bool:
    """A stored PIN in one of the accepted schemes (never a PIN itself)."""
    return text.startswith(("scrypt$", "pbkdf2_sha256$")) and len(text.split("$")) in (4, 6)


def check_pin_hash(pin: str, stored: str) -> bool:
    """Constant-time check of a PIN against its stored hash; a malformed hash never matches."""
    try:
        kind, *parts = stored.split("$")
        if kind == "scrypt":
            n, r, p, salt, want = int(parts[0]), int(parts[1]), int(parts[2]), parts[3], parts[4]
            got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=n, r=r, p=p,
                                 dklen=len(want) // 2, maxmem=256 * 1024 * 1024)
        elif kind == "pbkdf2_sha256":
            iterations, salt, want = int(parts[0]), parts[1], parts[2]
            got = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), iterations,
                                      dklen=len(want) // 2)
        else:
            return False
        return hmac.compare_digest(got, bytes.fromhex(want))
    except (ValueError, IndexError):
        return False


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes Arabic-Indic or fullwidth digits, which no dialled or
    keyed number ever has, so a blocked number written in them would never match."""
    return text.isascii() and text.isdigit()


def _numbers(raw: object, where: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise PolicyError(f"{where}: expected a list of E.164 numbers")
    out = []
    for item in raw:
        number = item.get("number") if isinstance(item, dict) else item
        if not isinstance(number, str) or not number.startswith("+") or not _digits(number[1:]):
            raise PolicyError(f"{where}: {number!r} is not an E.164 number (+digits)")
        out.append(number)
    return frozenset(out)


class Policy:
    """All facilities' policies plus the global privileged list; cheap lookups, one verified-PIN cache."""

    def __init__(self, facilities: dict[str, FacilityPolicy], privileged: frozenset[str] = frozenset()):
        self.facilities = facilities
        self.global_privileged = privileged
        self._files = dict(facilities)       # as the TOML files say, before any SQL roster
        # Successful PIN checks, keyed by an HMAC under a per-process random key: a repeat call by the
        # same inmate skips the deliberately slow KDF; the cache is useless outside this process.
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, str], bytes] = {}

    @classmethod
    def load(cls, policy_dir: str | Path) -> Policy:
        facilities: dict[str, FacilityPolicy] = {}
        privileged: set[str] = set()
        directory = Path(policy_dir)
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise PolicyError(f"{path}: {exc}") from exc
            facility_id = data.get("facility")
            if facility_id is None:
                privileged |= _numbers(data.get("privileged_numbers"), f"{path}: privileged_numbers")
                continue
            facilities[facility_id] = cls._facility(path, facility_id, data)
        return cls(facilities, frozenset(privileged))

    @staticmethod
    def _facility(path: Path, facility_id: str, data: dict[str, Any]) -> FacilityPolicy:
        digits = int(data.get("inmate_number_digits", 4))
        inmates: dict[str, Inmate] = {}
        for number, raw in (data.get("inmates") or {}).items():
            where = f"{path}: inmates.{number}"
            if not (_digits(number) and len(number) == digits):
                raise PolicyError(f"{where}: inmate number must be {digits} digits")
            pin_hash = raw.get("pin_hash")
            if not isinstance(pin_hash, str) or not pin_hash.startswith(("scrypt$", "pbkdf2_sha256$")):
                raise PolicyError(f"{where}: pin_hash missing or of an unknown scheme")
            inmates[number] = Inmate(
                facility_id=facility_id, number=number, name=str(raw.get("name", "")), pin_hash=pin_hash,
                allowed=_numbers(raw.get("allowed"), f"{where}.allowed"),
                active=bool(raw.get("active", True)), language=str(raw.get("language", "")),
                allowed_only=bool(raw.get("allowed_only", False)),
            )
        return FacilityPolicy(
            facility_id=facility_id,
            inmate_number_digits=digits,
            require_allowed_list=bool(data.get("require_allowed_list", False)),
            pin_max_failures=int(data.get("pin_max_failures", 3)),
            pin_failure_window_seconds=int(data.get("pin_failure_window_seconds", 900)),
            blocked_numbers=_numbers(data.get("blocked_numbers"), f"{path}: blocked_numbers"),
            privileged_numbers=_numbers(data.get("privileged_numbers"), f"{path}: privileged_numbers"),
            inmates=inmates,
        )

    def apply_roster(self, facility_id: str, roster: dict[str, Inmate]) -> None:
        """Lay a facility's SQL roster over its TOML inmates: an inmate number in SQL replaces the TOML
        entry (keeping the TOML PIN hash when SQL has none); TOML inmates absent from SQL stay. A
        facility with no TOML file gets the default policy. Verified PINs are forgotten (a new PIN or
        a release counts from the next call)."""
        base = self._files.get(facility_id) or FacilityPolicy(facility_id=facility_id)
        merged = dict(base.inmates)
        for number, inmate in roster.items():
            old = base.inmates.get(number)
            if not inmate.pin_hash and old is not None:
                inmate = replace(inmate, pin_hash=old.pin_hash)
            merged[number] = replace(inmate, allowed_only=old.allowed_only if old else False)
        self.facilities = {**self.facilities, facility_id: replace(base, inmates=merged)}
        self._verified = {k: v for k, v in self._verified.items() if k[0] != facility_id}

    def facility(self, facility_id: str) -> FacilityPolicy | None:
        return self.facilities.get(facility_id)

    def split_entry(self, facility_id: str, entry: str) -> tuple[str, str] | None:
        """Split a keyed entry into (inmate number, passcode); None when it cannot be one."""
        fac = self.facilities.get(facility_id)
        if fac is None or not _digits(entry) or len(entry) <= fac.inmate_number_digits:
            return None
        return entry[: fac.inmate_number_digits], entry[fac.inmate_number_digits:]

    def cached_pin_ok(self, facility_id: str, number: str, passcode: str) -> bool:
        mac = hmac.new(self._cache_key, passcode.encode(), "sha256").digest()
        known = self._verified.get((facility_id, number))
        return known is not None and hmac.compare_digest(known, mac)

    def verify_pin(self, facility_id: str, number: str, passcode: str) -> Inmate | None:
        """The active inmate whose PIN this is, else None. Slow (KDF) unless cached; run off-loop."""
        fac = self.facilities.get(facility_id)
        inmate = fac.inmates.get(number) if fac else None
        if inmate is None or not inmate.active:
            return None
        if self.cached_pin_ok(facility_id, number, passcode):
            return inmate
        if not check_pin_hash(passcode, inmate.pin_hash):
            return None
        if len(self._verified) > 100_000:
            self._verified.clear()
        mac = hmac.new(self._cache_key, passcode.encode(), "sha256").digest()
        self._verified[(facility_id, number)] = mac
        return inmate

    def is_privileged(self, facility_id: str, e164: str) -> bool:
        fac = self.facilities.get(facility_id)
        return e164 in self.global_privileged or (fac is not None and e164 in fac.privileged_numbers)

    def facility_blocks(self, facility_id: str, e164: str) -> bool:
        fac = self.facilities.get(facility_id)
        return fac is not None and e164 in fac.blocked_numbers

    def allowed(self, inmate: Inmate, e164: str) -> bool:
        """Allowed-list check; privileged numbers are always callable (access to counsel)."""
        fac = self.facilities.get(inmate.facility_id)
        if fac is None or not (fac.require_allowed_list or inmate.allowed_only):
            return True
        return e164 in inmate.allowed or self.is_privileged(inmate.facility_id, e164)
