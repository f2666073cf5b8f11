"""AMI wire format, with no I/O: message type, line parser, action encoder.

Facts relied on (Asterisk 22 transcripts, docs/protocol.md): the server first sends one banner line
``Asterisk Call Manager/11.0.0``; after that every message is ``Key: value`` lines ending in ``\\r\\n``,
closed by an empty ``\\r\\n`` line. Keys can repeat (``Variable:``) and their order matters; Asterisk
matches keys case-insensitively. A value may itself contain ``: `` (``RequestType: Action: Foo``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

BANNER_PREFIX: Final = "Asterisk Call Manager/"
MAX_MESSAGE_LINES: Final = 4096
MAX_MESSAGE_BYTES: Final = 1024 * 1024
_KEY = re.compile(r"[A-Za-z0-9_()\-]+")
_FORBIDDEN = ("\r", "\n", "\x00")

HeaderValue = str | int | bool


class AMIProtocolError(Exception):
    """The peer sent something that is not AMI (no banner, oversized message...)."""


class Message(Mapping[str, str]):
    """An AMI message: ordered (key, value) pairs; lookup is case-insensitive and returns the first.

    List actions (``EventList: start``) get ``events`` (the items) and ``complete`` (the final
    ``...Complete`` event) filled in by the client.
    """

    __slots__ = ("_index", "complete", "events", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.headers: list[tuple[str, str]] = list(headers)
        self._index: dict[str, list[str]] = {}
        for key, value in self.headers:
            self._index.setdefault(key.lower(), []).append(value)
        self.events: list[Message] = []
        self.complete: Message | None = None

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()][0]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self.headers:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len(self._index)

    def get_all(self, key: str) -> list[str]:
        return list(self._index.get(key.lower(), ()))

    @property
    def is_event(self) -> bool:
        return "event" in self._index

    @property
    def is_response(self) -> bool:
        return "response" in self._index and "event" not in self._index

    @property
    def name(self) -> str:
        """Event name, or the Response value ("Success", "Error", "Goodbye"...)."""
        return self.get("Event") or self.get("Response") or ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def to_bytes(self) -> bytes:
        return encode_headers(self.headers)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}: {v}" for k, v in self.headers[:4])
        more = "..." if len(self.headers) > 4 else ""
        return f"Message({shown}{more})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return self.headers == other.headers
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _text(value: HeaderValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_header(key: str, value: str) -> None:
    """Refuse CR/LF/NUL in a value (it would start a new header or message) and odd key names."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not an AMI header name: {key!r}")
    for ch in _FORBIDDEN:
        if ch in value:
            raise ValueError(f"AMI header {key} contains {ch!r}: refused (it would inject headers)")


def encode_headers(headers: Iterable[tuple[str, HeaderValue]]) -> bytes:
    lines = []
    for key, raw in headers:
        value = _text(raw)
        check_header(key, value)
        lines.append(f"{key}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def encode_action(
    action: str, action_id: str | None, headers: Iterable[tuple[str, HeaderValue]] = ()
) -> bytes:
    """``Action``, then ``ActionID``, then the headers in order (repeat a key by repeating the pair)."""
    pairs: list[tuple[str, HeaderValue]] = [("Action", action)]
    if action_id is not None:
        pairs.append(("ActionID", action_id))
    pairs.extend(headers)
    return encode_headers(pairs)


def headers_from(
    kwargs: Mapping[str, HeaderValue | Iterable[HeaderValue] | None],
) -> list[tuple[str, HeaderValue]]:
    """Keyword headers to pairs: a list/tuple value repeats the key, None drops it."""
    pairs: list[tuple[str, HeaderValue]] = []
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((key, v) for v in value)
        else:
            pairs.append((key, value))  # type: ignore[arg-type]
    return pairs


def parse_banner(line: bytes) -> str:
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    if not text.startswith(BANNER_PREFIX):
        raise AMIProtocolError(f"not an AMI banner: {text[:60]!r}")
    return text[len(BANNER_PREFIX):]


def parse_line(line: bytes) -> tuple[str, str] | None:
    """One header line -> (key, value); None for the empty line that ends a message.

    A line with no colon (old ``Command`` output) is kept as ``("Output", line)``.
    """
    text = line.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if text == "":
        return None
    key, sep, value = text.partition(":")
    if not sep or not _KEY.fullmatch(key):
        return ("Output", text)
    if value.startswith(" "):
        value = value[1:]
    return (key, value)


class MessageParser:
    """Line-fed: ``feed(line)`` returns a complete :class:`Message` at the empty line, else None."""

    __slots__ = ("_bytes", "_headers")

    def __init__(self) -> None:
        self._headers: list[tuple[str, str]] = []
        self._bytes = 0

    def feed(self, line: bytes) -> Message | None:
        pair = parse_line(line)
        if pair is None:
            if not self._headers:
                return None  # stray blank line between messages
            msg, self._headers, self._bytes = Message(self._headers), [], 0
            return msg
        self._bytes += len(line)
        self._headers.append(pair)
        if len(self._headers) > MAX_MESSAGE_LINES or self._bytes > MAX_MESSAGE_BYTES:
            raise AMIProtocolError("AMI message too large")
        return None


def parse_messages(data: bytes) -> list[Message]:
    """Parse a byte string of whole messages (tests and tools)."""
    parser = MessageParser()
    out = []
    for line in data.splitlines(keepends=True):
        msg = parser.feed(line)
        if msg is not None:
            out.append(msg)
    return out
