"""Signed unsubscribe tokens: HMAC-SHA256 over channel and address, so a link opts out exactly the
address it was sent to and cannot be forged for another (the web page that takes it comes later)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token(secret: str, channel: str, address: str) -> str:
    body = f"{channel}:{address}".encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]
    return f"{_b64(body)}.{_b64(mac)}"


def verify(secret: str, value: str) -> tuple[str, str] | None:
    """(channel, address) for a valid token, else None."""
    try:
        body_text, mac_text = value.split(".", 1)
        body = _unb64(body_text)
        mac = _unb64(mac_text)
    except (ValueError, TypeError):
        return None
    good = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]
    if not secret or not hmac.compare_digest(mac, good):
        return None
    channel, _, address = body.decode(errors="replace").partition(":")
    return channel, address


def url(base: str, secret: str, channel: str, address: str) -> str:
    return f"{base.rstrip('/')}?t={quote(token(secret, channel, address))}"
