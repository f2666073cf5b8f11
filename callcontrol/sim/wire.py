"""Asterisk-side byte encodings: FastAGI env blocks and replies, AMI messages.

Everything here is pure: strings in, bytes out (or the reverse), exactly as the captures in
tests/data/asterisk-transcripts show. AGI lines end in "\\n"; AMI lines in "\\r\\n", a message ends with an
empty line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

AGI_VERSION = "22.10.1"
AMI_BANNER = b"Asterisk Call Manager/11.0.0\r\n"

DEAD_511 = b"511 Command Not Permitted on a dead channel or intercept routine\n"
INVALID_510 = b"510 Invalid or unknown command\n"
HANGUP_LINE = b"HANGUP\n"

# Usage text Asterisk 22 prints in a 520 reply (captured for STREAM FILE and WAIT FOR DIGIT; the others
# are our short stand-ins, see docs/simulator.md).
USAGE: dict[str, tuple[str, ...]] = {
    "STREAM FILE": (
        "Send the given file, allowing playback to be interrupted by the given digits, if any. Returns "
        "<literal>0</literal> if playback completes without a digit being pressed, or the ASCII numerical "
        "value of the digit if one was pressed, or <literal>-1</literal> on error or if the channel was "
        "disconnected. If musiconhold is playing before calling stream file it will be automatically "
        "stopped and will not be restarted after completion.",
        "It sets the following channel variables upon completion:",
        "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
        "    <value>SUCCESS</value>",
        "    <value>FAILED</value>",
    ),
    "WAIT FOR DIGIT": (
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a DTMF digit. "
        "Returns <literal>-1</literal> on channel failure, <literal>0</literal> if no digit is received in "
        "the timeout, or the numerical value of the ascii of the digit if one is received. Use "
        "<literal>-1</literal> for the <replaceable>timeout</replaceable> value if you desire the call to "
        "block indefinitely.",
    ),
}


def env_block(pairs: Sequence[tuple[str, str]]) -> bytes:
    """The FastAGI environment block: `agi_x: value` lines and an empty line."""
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode() + b"\n"


def reply(result: int | str, extra: str = "") -> bytes:
    """`200 result=<result>[ <extra>]\\n`; result may be "" (GET DATA timeout with no digits)."""
    return f"200 result={result}{' ' + extra if extra else ''}\n".encode()


def value_reply(value: str | None) -> bytes:
    """GET VARIABLE style: `200 result=1 (value)` when set (even to ""), `200 result=0` when unset."""
    return b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode()


def usage_520(command: str) -> bytes:
    text = USAGE.get(command, (f"Usage: {command} (see the Asterisk AGI documentation)",))
    body = "".join(line + "\n" for line in text)
    return (
        "520-Invalid command syntax.  Proper usage follows:\n" + body + "520 End of proper usage.\n"
    ).encode()


def parse_agi_args(line: str) -> list[str]:
    """Split an AGI command line like Asterisk's parse_args(): quotes group, backslash escapes."""
    if '"' not in line and "\\" not in line:   # nothing to group or escape: blanks separate
        return [a for a in line.replace("\t", " ").split(" ") if a]
    args: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
                args.append("")
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                args[-1] = "".join(cur)
            cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
            args.append("")
        cur.append(ch)
        escaped = False
    if cur is not None:
        args[-1] = "".join(cur)
    return args


# --------------------------------------------------------------------------------------------- AMI


def ami_message(pairs: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message: `Key: Value\\r\\n` lines and the closing empty line."""
    return "".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n"


def parse_ami_message(raw: bytes) -> list[tuple[str, str]]:
    """Headers of one AMI message (without its blank terminator line), in order, keys as sent."""
    out: list[tuple[str, str]] = []
    for line in raw.decode(errors="replace").replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        out.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return out


def header(pairs: Sequence[tuple[str, str]], name: str, default: str | None = None) -> str | None:
    """First value of header `name` (case-insensitive)."""
    low = name.lower()
    for k, v in pairs:
        if k.lower() == low:
            return v
    return default


def headers_all(pairs: Sequence[tuple[str, str]], name: str) -> list[str]:
    low = name.lower()
    return [v for k, v in pairs if k.lower() == low]
