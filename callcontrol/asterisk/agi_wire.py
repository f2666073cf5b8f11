"""FastAGI wire format, with no I/O: env block, reply lines, command encoding.

Facts relied on (from the Asterisk 22 transcripts in docs/protocol.md):
* Every line Asterisk sends ends in a bare ``\\n``. The env block is ``agi_name: value`` lines ended by an
  empty line.
* A reply is ``200 result=N [(data)] [endpos=N]``, or a one-line error (``510 ...``, ``511 ...``), or a
  multi-line block ``520-...`` ... ``520 End of proper usage.``.
* A bare ``HANGUP`` line is a hang-up notice, never a reply.
* res_agi splits a command line like a shell: whitespace separates arguments, ``"`` toggles quoting and a
  backslash escapes the next byte. It reads commands through a 2048-byte buffer, so a longer line would be
  split into two commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

#: Longest command line we send (newline included). res_agi reads through a 2048-byte buffer; a longer
#: line would be cut and its tail run as a second command, so we refuse well below it.
MAX_COMMAND_BYTES: Final = 2000
MAX_ENV_LINES: Final = 200
MAX_ENV_BYTES: Final = 32 * 1024
#: A 520 usage text is a few lines of a few hundred bytes; a block that grows past these never ends.
MAX_BLOCK_LINES: Final = 200
MAX_BLOCK_BYTES: Final = 64 * 1024

_ENV_LINE = re.compile(r"agi_([a-z0-9_]{1,64}): ?(.*)")
_ENV_BLOCK = re.compile(r"(?:agi_[a-z0-9_]{1,64}: ?[^\n]*\n)+\n")
_ENV_PAIR = re.compile(r"agi_([a-z0-9_]{1,64}): ?([^\n]*)\n")
_COMMAND = re.compile(r"[A-Za-z][A-Za-z0-9 ]*[A-Za-z0-9]|[A-Za-z]")
_FORBIDDEN = ("\r", "\n", "\x00")
_NEEDS_QUOTES = re.compile(r'[\s"\\]')
_REPLY_200 = re.compile(r"200 result=(\S*)(?: (.*))?")
_ENDPOS = re.compile(r"(?:^| )endpos=(-?\d+)$")
_INT = re.compile(r"-?\d+")
_SINGLE = re.compile(r"(\d{3})(?: (.*))?")
_MULTI_START = re.compile(r"(\d{3})-(.*)")


class AGIProtocolError(Exception):
    """The peer sent bytes that are not FastAGI (bad env block, unknown reply line, reply out of turn)."""


class EnvError(AGIProtocolError):
    """The env block is malformed, too large or not UTF-8."""


@dataclass(frozen=True, slots=True)
class AGIReply:
    """One parsed reply. ``result`` is None when the result is not an integer (``result=`` on timeout)."""

    code: int
    result: int | None
    raw_result: str
    data: str | None
    endpos: int | None
    text: str

    @property
    def ok(self) -> bool:
        return self.code == 200


class _HangupLine:
    __slots__ = ()

    def __repr__(self) -> str:
        return "HANGUP_LINE"


#: What :class:`ReplyAssembler` returns for Asterisk's bare ``HANGUP`` line.
HANGUP_LINE: Final = _HangupLine()


class Quoted(str):
    """An argument that is always sent in double quotes, even when it would not need them."""

    __slots__ = ()


# --------------------------------------------------------------------------- commands


def quote_arg(value: str, *, force: bool = False) -> str:
    """Quote ``value`` for res_agi's argument splitter; plain tokens pass unchanged unless ``force``."""
    check_arg(value)
    if force or value == "" or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def check_arg(value: str) -> None:
    """Refuse CR, LF and NUL: any of them would end the command line early (frame injection)."""
    for ch in _FORBIDDEN:
        if ch in value:
            raise ValueError(f"AGI argument contains {ch!r}: refused (it would inject a command line)")


def encode_command(command: str, *args: str | int) -> bytes:
    """``encode_command("SET VARIABLE", "X", "two words")`` -> ``b'SET VARIABLE X "two words"\\n'``.

    ``Quoted`` arguments are always quoted; other strings only when empty or holding whitespace, ``"``
    or ``\\``. Raises ValueError (nothing to send) on CR/LF/NUL, a malformed command word or an
    over-long line.
    """
    check_arg(command)
    if not _COMMAND.fullmatch(command):
        raise ValueError(f"not an AGI command word: {command!r}")
    parts = [command]
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, str | int):
            raise TypeError(f"AGI arguments are str or int, not {type(arg).__name__}")
        if isinstance(arg, int):
            parts.append(str(arg))
        else:
            parts.append(quote_arg(arg, force=isinstance(arg, Quoted)))
    line = (" ".join(parts) + "\n").encode("utf-8")
    if len(line) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command line of {len(line)} bytes exceeds {MAX_COMMAND_BYTES}")
    return line


def split_command(line: str) -> list[str]:
    """Split a command line the way res_agi does (used by tests and the replay peer)."""
    args: list[str] = []
    cur: list[str] = []
    in_word = quoted = escaped = False
    for ch in line.rstrip("\n"):
        if escaped:
            cur.append(ch)
            in_word, escaped = True, False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            in_word = True
        elif ch in " \t" and not quoted:
            if in_word:
                args.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(ch)
            in_word = True
    if in_word:
        args.append("".join(cur))
    return args


# --------------------------------------------------------------------------- replies


def _decode(line: bytes | str) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def parse_reply(line: bytes | str) -> AGIReply:
    """Parse one single-line reply (``200 ...``, ``510 ...``, ``511 ...``)."""
    text = _decode(line)
    m = _REPLY_200.fullmatch(text)
    if m:
        raw, rest = m.group(1), m.group(2) or ""
        endpos = None
        e = _ENDPOS.search(rest)
        if e:
            endpos = int(e.group(1))
            rest = rest[: e.start()]
        data = None
        if len(rest) >= 2 and rest[0] == "(" and rest[-1] == ")":
            data = rest[1:-1]
        elif rest:
            raise AGIProtocolError(f"unparsable 200 reply: {text!r}")
        result = int(raw) if _INT.fullmatch(raw) else None
        return AGIReply(200, result, raw, data, endpos, text)
    s = _SINGLE.fullmatch(text)
    if s:
        return AGIReply(int(s.group(1)), None, "", None, None, text)
    raise AGIProtocolError(f"not an AGI reply line: {text!r}")


class ReplyAssembler:
    """Turns the lines Asterisk sends after the env block into replies and hang-up notices.

    ``feed(line)`` returns an :class:`AGIReply`, :data:`HANGUP_LINE`, or None while a multi-line
    ``NNN-`` block is still open. Lines inside an open block are body text, whatever they say. A block
    over MAX_BLOCK_LINES or MAX_BLOCK_BYTES raises AGIProtocolError and is dropped.
    """

    __slots__ = ("_bytes", "_code", "_lines")

    def __init__(self) -> None:
        self._code: str | None = None
        self._lines: list[str] = []
        self._bytes = 0

    @property
    def in_block(self) -> bool:
        return self._code is not None

    def feed(self, line: bytes | str) -> AGIReply | _HangupLine | None:
        text = _decode(line)
        if self._code is not None:
            self._lines.append(text)
            self._bytes += len(text) + 1
            if len(self._lines) > MAX_BLOCK_LINES or self._bytes > MAX_BLOCK_BYTES:
                self._code, self._lines = None, []
                raise AGIProtocolError(
                    f"multi-line reply over {MAX_BLOCK_LINES} lines or {MAX_BLOCK_BYTES} bytes")
            if text.startswith(self._code + " ") or text == self._code:
                code, self._code = int(self._code), None
                full, self._lines = "\n".join(self._lines), []
                return AGIReply(code, None, "", None, None, full)
            return None
        if text == "HANGUP":
            return HANGUP_LINE
        m = _MULTI_START.fullmatch(text)
        if m:
            self._code, self._lines, self._bytes = m.group(1), [text], len(text) + 1
            return None
        return parse_reply(text)


# --------------------------------------------------------------------------- env block


@dataclass(frozen=True, slots=True)
class Env:
    """A parsed env block: ``vars`` keeps the ``agi_`` prefix, as Asterisk sends it."""

    vars: dict[str, str]
    script: str
    query: dict[str, str]
    args: list[str]


class EnvParser:
    """Line-fed env block parser with size limits; ``feed`` returns True once the block is complete."""

    __slots__ = ("_bytes", "_done", "vars")

    def __init__(self) -> None:
        self.vars: dict[str, str] = {}
        self._bytes = 0
        self._done = False

    def feed(self, raw: bytes) -> bool:
        if self._done:
            raise EnvError("env block already complete")
        self._bytes += len(raw)
        if self._bytes > MAX_ENV_BYTES:
            raise EnvError(f"env block larger than {MAX_ENV_BYTES} bytes")
        if not raw.endswith(b"\n"):
            raise EnvError("env block ended without a line terminator")
        # Values are channel data as Asterisk holds it (a carrier's caller name may be Latin-1): bytes
        # that are not UTF-8 become U+FFFD rather than dropping the call; keys are checked below.
        text = raw.decode("utf-8", "replace")
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
        if text == "":
            if not self.vars:
                raise EnvError("empty env block")
            self._done = True
            return True
        if "\x00" in text:
            raise EnvError("NUL byte in env block")
        m = _ENV_LINE.fullmatch(text)
        if not m:
            raise EnvError(f"garbage line in env block: {text[:60]!r}")
        key = "agi_" + m.group(1)
        if key in self.vars:
            raise EnvError(f"duplicate env key {key}")
        if len(self.vars) >= MAX_ENV_LINES:
            raise EnvError(f"more than {MAX_ENV_LINES} env lines")
        self.vars[key] = m.group(2)
        return False

    def result(self) -> Env:
        if not self._done:
            raise EnvError("env block incomplete")
        return build_env(self.vars)


def parse_env_block(block: bytes) -> Env | None:
    """A whole env block (ending in the empty line) parsed at once, or None to take the line parser.

    Asterisk writes the block in one go, so it usually arrives in one read: one decode and two
    C-level regex passes instead of a Python call per line. It accepts only blocks the line parser
    would accept with the same result; anything else (CR, NUL, garbage, duplicates, limits) goes back
    to the line parser, which gives the precise error.
    """
    if len(block) > MAX_ENV_BYTES or b"\r" in block or b"\x00" in block:
        return None
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _ENV_BLOCK.fullmatch(text):
        return None
    pairs = _ENV_PAIR.findall(text)
    if len(pairs) > MAX_ENV_LINES:
        return None
    env = {"agi_" + key: value for key, value in pairs}
    if len(env) != len(pairs):
        return None
    return build_env(env)


def build_env(env: dict[str, str]) -> Env:
    """Route and arguments: script and query from agi_network_script (else agi_request's path)."""
    target = env.get("agi_network_script")
    if target is not None:
        path, _, qs = target.partition("?")
    else:
        parts = urlsplit(env.get("agi_request", ""))
        path, qs = parts.path, parts.query
    script = unquote(path).strip("/")
    query = dict(parse_qsl(qs, keep_blank_values=True))
    numbered = []
    for key, value in env.items():
        if key.startswith("agi_arg_") and key[8:].isdigit():
            numbered.append((int(key[8:]), value))
    args = [value for _, value in sorted(numbered)]
    return Env(dict(env), script, query, args)
