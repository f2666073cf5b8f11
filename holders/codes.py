"""One-time codes: 6 random digits, kept only as HMAC-SHA256(server secret, salt|code id|code) and
compared in constant time. The clear code exists only in memory, on its way to the CodeSender."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from hmac import compare_digest

from holders.errors import Unavailable

DIGITS = 6
MIN_SECRET_BYTES = 16


def new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def new_salt() -> str:
    return secrets.token_hex(16)


def check_secret(secret: str) -> bytes:
    """Fail closed: without a real secret no code is issued or checked."""
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise Unavailable(f"holder_code_secret must be set (at least {MIN_SECRET_BYTES} bytes)")
    return raw


def digest(secret: bytes, salt: str, code_id: str, code: str) -> str:
    return hmac.new(secret, f"{salt}|{code_id}|{code}".encode(), hashlib.sha256).hexdigest()


def matches(secret: bytes, salt: str, code_id: str, code: str, stored: str) -> bool:
    return compare_digest(digest(secret, salt, code_id, code), stored)
