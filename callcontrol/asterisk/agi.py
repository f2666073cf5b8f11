"""asyncio FastAGI server and the per-call channel API that the call flows are written against.

One TCP connection per AGI() call. Each connection's protocol turns Asterisk's lines into replies
(matched strictly in order to the single outstanding command) and hang-up notices (the bare ``HANGUP``
line, or EOF), so a hang-up is seen even while the flow is idle. Every command has a deadline
(agi_deadlines.py), so a silent or hostile peer cannot hold a session. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from callcontrol.asterisk.agi_deadlines import Deadlines
from callcontrol.asterisk.agi_wire import (
    HANGUP_LINE,
    AGIProtocolError,
    AGIReply,
    Env,
    EnvError,
    EnvParser,
    Quoted,
    ReplyAssembler,
    encode_command,
    parse_env_block,
)
from callcontrol.platform.logs import SENSITIVE_KEYS

__all__ = [
    "AGIChannel",
    "AGIError",
    "AGIHangup",
    "AGIReply",
    "AGIServer",
    "AGITimeout",
    "AllowList",
    "Deadlines",
    "Handler",
]

log = structlog.get_logger()

Handler = Callable[["AGIChannel"], Awaitable[None]]

#: Default stream buffer limit: longest line accepted from Asterisk.
LINE_LIMIT = 64 * 1024


class AGIError(Exception):
    """Asterisk refused or failed a command (510, 520, result -2, -1 on a live channel...)."""

    def __init__(self, message: str, reply: AGIReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class AGIHangup(Exception):
    """The channel is gone: 511, a media command's -1 followed by HANGUP, or the connection closed."""

    def __init__(self, message: str = "channel hung up", reply: AGIReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class AGITimeout(AGIHangup):
    """No reply within the command's deadline. The session is aborted: a late reply would be taken for
    the next command's. A subclass of AGIHangup, so the flows end and settle as for a hang-up."""


def _auto_sensitive(*names: str) -> bool:
    return any(SENSITIVE_KEYS.search(n) for n in names)


#: Asterisk reads an AGI command into a 2048-byte buffer (res_agi's AGI_BUF_LEN); stay well inside it.
APP_FILES_LIMIT = 1800
_APP_UNSAFE = frozenset(",&|()\"'\\ \t\r\n")


def fits_one_app(files: Sequence[str]) -> bool:
    """Whether prompt files can go in one Playback()/Read() argument: none empty, none with a character
    that splits application arguments or file lists, and the list short enough for one AGI line."""
    return bool(files) and all(f and not _APP_UNSAFE.intersection(f) for f in files) and (
        sum(len(f) + 1 for f in files) <= APP_FILES_LIMIT)


def _check_app_files(files: Sequence[str]) -> None:
    if not fits_one_app(files):
        raise ValueError("prompt files cannot be passed in one application argument")


class AGIChannel:
    """One FastAGI session. Commands run one at a time; replies are matched to them in order.

    Driven by the connection's protocol (``_AGIConnection``): each line Asterisk sends is handled as it
    arrives, so a hang-up is seen even while the flow is idle, without a reader task per call.
    """

    def __init__(
        self,
        conn: _AGIConnection,
        env: Env,
        peer: str,
        *,
        hangup_grace: float = 0.3,
        close_grace: float = 1.0,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.env: dict[str, str] = env.vars
        self.script: str = env.script
        self.args: list[str] = env.args
        self.query: dict[str, str] = env.query
        self.peer = peer
        self.hungup = False
        self.hangup_reason: str | None = None
        self.hangup_event = asyncio.Event()
        self._conn = conn
        self._transport = conn.transport
        self._loop = asyncio.get_running_loop()
        self._hangup_grace = hangup_grace
        self._close_grace = close_grace
        self._deadlines = deadlines or Deadlines()
        self._deadline: asyncio.Timeout | None = None   # the outstanding command's
        self._lock = asyncio.Lock()
        self._assembler = ReplyAssembler()
        self._pending: asyncio.Future[AGIReply] | None = None
        self._pending_sensitive = False   # the outstanding command reads secrets (card, CVV, PIN)
        self._broken: str | None = None
        self._closed = False
        self._input_done = False          # EOF, connection lost or protocol error: no more replies
        self._input_end: asyncio.Future[None] | None = None
        self._bound_log: Any = None
        self._debug: bool | None = None  # debug logging on? checked once per session
        self.opened = time.monotonic()    # env block complete: authorization latency runs from here

    @property
    def _log(self) -> Any:
        """Bound on first use: most sessions never log, and binding resolves the structlog config."""
        if self._bound_log is None:
            self._bound_log = log.bind(channel=self.channel_name, uniqueid=self.uniqueid, script=self.script)
        return self._bound_log

    # ------------------------------------------------------------------ identity

    @property
    def channel_name(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ input (called by the protocol)

    def _set_hungup(self, reason: str) -> None:
        if not self.hungup:
            self.hungup = True
            self.hangup_reason = reason
            self.hangup_event.set()
            self._log.info("agi.hangup", reason=reason)
        # A dead channel answers at once (511, or a variable's value): a HANGUP line, or a thousand,
        # instead of the reply must not stretch a long command's deadline.
        deadline = self._deadline
        if deadline is not None and self._pending is not None:
            when = deadline.when()
            short = self._loop.time() + self._deadlines.reply
            if when is None or when > short:
                deadline.reschedule(short)

    def _on_line(self, line: bytes) -> None:
        """One line from Asterisk: a reply to the outstanding command, or the HANGUP notice."""
        if self._input_done:
            return
        try:
            item = self._assembler.feed(line)
            if item is None:
                return
            if item is HANGUP_LINE:
                self._set_hungup("hangup-line")
                return
            fut = self._pending
            if fut is None or fut.done():
                raise AGIProtocolError(f"reply {item.code} with no command outstanding")  # type: ignore[union-attr]
            self._pending = None
            fut.set_result(item)  # type: ignore[arg-type]
        except (AGIProtocolError, ValueError) as exc:
            self._protocol_error(exc)

    def _protocol_error(self, exc: Exception) -> None:
        """Garbage, an unsolicited reply or an over-long line: the session cannot be trusted any more."""
        if self._input_done:
            return
        # A malformed reply to a command reading secrets may hold them (an expiry or CVV is not
        # something the log redactor can recognise): say only that it was malformed.
        self._broken = ("malformed reply to a sensitive command" if self._pending is not None
                        and self._pending_sensitive else str(exc))
        self._log.warning("agi.protocol_error", error=self._broken)
        self._transport.abort()
        self._end_input("protocol-error")

    def _end_input(self, reason: str) -> None:
        """No more lines will come: mark the hang-up and fail the outstanding command."""
        if self._input_done:
            return
        self._input_done = True
        self._set_hungup(reason)
        fut, self._pending = self._pending, None
        if fut is not None and not fut.done():
            fut.set_exception(AGIHangup(f"connection closed ({reason})"))
        end = self._input_end
        if end is not None and not end.done():
            end.set_result(None)

    # ------------------------------------------------------------------ low level

    async def send(
        self, command: str, *args: str | int, sensitive: bool = False, timeout: float | None = None
    ) -> AGIReply:
        """Send one command and return its 200 reply.

        Raises ValueError before sending anything if an argument holds CR/LF/NUL; AGIHangup on 511 or a
        closed connection; AGIError on any other non-200 reply; AGITimeout (the session is then aborted).
        """
        line = encode_command(command, *args)
        timing = self._conn.server.timing
        async with self._lock:
            if self._broken:
                raise AGIHangup(f"session unusable: {self._broken}")
            if self._closed or self._input_done:
                raise AGIHangup("connection closed")
            fut: asyncio.Future[AGIReply] = self._loop.create_future()
            self._pending = fut
            self._pending_sensitive = sensitive
            if not sensitive:
                self._log_debug("agi.command", line=line)
            wait = self._deadlines.for_command(command, args) if timeout is None else timeout
            if self.hungup:
                wait = min(wait, self._deadlines.reply)
            t0 = time.monotonic()
            dial = command == "EXEC" and bool(args) and args[0] == "Dial"
            if timing is not None and dial:
                timing.dial(t0 - self.opened)
            try:
                async with asyncio.timeout(wait) as self._deadline:
                    self._transport.write(line)
                    if self._conn.write_paused:
                        await self._conn.drain()
                    reply = await fut
            except TimeoutError:
                label = _label(command, args)   # the command word (and EXEC's app), never an argument
                self._broken = f"no reply to {label} within {wait:g}s"
                self._log.warning("agi.command_timeout", command=label, deadline=round(wait, 3))
                self._transport.abort()
                raise AGITimeout(self._broken) from None
            except (ConnectionError, OSError) as exc:
                self._abort(type(exc).__name__)
                raise AGIHangup(f"connection lost: {type(exc).__name__}") from None
            except BaseException:
                if not fut.done():  # cancelled mid-command: the reply would be misattributed
                    self._abort("cancelled with a command outstanding")
                raise
            finally:
                self._deadline = None
                if self._pending is fut:
                    self._pending = None
        if timing is not None and not dial:       # Dial lasts as long as the call: not a latency
            timing.command(_label(command, args), time.monotonic() - t0)
        if not sensitive:
            self._log_debug("agi.reply", reply=reply)
        if reply.code == 511:
            self._set_hungup("dead-channel")
            raise AGIHangup("command not permitted on a dead channel", reply)
        if reply.code != 200:
            first = reply.text.split("\n", 1)[0]
            raise AGIError(f"{command}: {first}", reply)
        return reply

    def _log_debug(self, event: str, *, line: bytes = b"", reply: AGIReply | None = None) -> None:
        """Debug trace of the wire; the text is only built when debug logging is on."""
        if self._debug is None:
            self._debug = _debug_enabled()
        if not self._debug:
            return
        logger = self._log
        if reply is None:
            logger.debug(event, line=line[:-1].decode("utf-8", "replace"))
        else:
            logger.debug(event, reply=reply.text if reply.code == 200 else reply.text[:80])

    def _abort(self, why: str) -> None:
        self._broken = why
        self._log.warning("agi.session_aborted", reason=why)
        self._transport.abort()

    async def _hangup_within(self, grace: float) -> bool:
        if self.hungup:
            return True
        try:
            await asyncio.wait_for(self.hangup_event.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def _media(self, command: str, *args: str | int, sensitive: bool = False) -> AGIReply:
        """A command whose -1 means "error or hang-up": HANGUP follows a hang-up within ~50 ms."""
        reply = await self.send(command, *args, sensitive=sensitive)
        if reply.result == -1 and await self._hangup_within(self._hangup_grace):
            raise AGIHangup(f"{command}: channel hung up", reply)
        return reply

    @staticmethod
    def _digit(reply: AGIReply, command: str) -> str:
        if reply.result is None or reply.result < 0:
            raise AGIError(f"{command} failed: {reply.text}", reply)
        return chr(reply.result) if reply.result else ""

    # ------------------------------------------------------------------ channel API

    async def answer(self) -> None:
        reply = await self._media("ANSWER")
        if reply.result != 0:
            raise AGIError(f"ANSWER failed: {reply.text}", reply)

    async def get_variable(self, name: str, *, sensitive: bool | None = None) -> str | None:
        """Value of a channel variable or function; None when unset (``200 result=0``)."""
        quiet = _auto_sensitive(name) if sensitive is None else sensitive
        reply = await self.send("GET VARIABLE", name, sensitive=quiet)
        return reply.data if reply.result == 1 else None

    async def get_full_variable(self, expr: str, *, sensitive: bool | None = None) -> str | None:
        quiet = _auto_sensitive(expr) if sensitive is None else sensitive
        reply = await self.send("GET FULL VARIABLE", Quoted(expr), sensitive=quiet)
        return reply.data if reply.result == 1 else None

    async def set_variable(self, name: str, value: str, *, sensitive: bool | None = None) -> None:
        quiet = _auto_sensitive(name) if sensitive is None else sensitive
        reply = await self.send("SET VARIABLE", name, value, sensitive=quiet)
        if reply.result != 1:
            raise AGIError(f"SET VARIABLE {name} failed", reply)

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        """Play a prompt; returns the escape digit pressed or "".

        A -1 on a live channel (no HANGUP within the grace period) is a missing or unplayable file
        (``200 result=-1 endpos=0``): logged as a warning and treated as played, so a missing prompt
        never drops a call.
        """
        reply = await self._media("STREAM FILE", name, Quoted(escape_digits))
        if reply.result == -1:
            self._log.warning("agi.prompt_failed", file=name, endpos=reply.endpos)
            return ""
        return self._digit(reply, "STREAM FILE")

    async def get_data(
        self, prompt: str, timeout_ms: int, max_digits: int, *, sensitive: bool = False
    ) -> str | None:
        """Digits entered (``#`` ends entry and is not included); None on a timeout with no digits."""
        reply = await self._media("GET DATA", prompt, int(timeout_ms), int(max_digits), sensitive=sensitive)
        if reply.result == -1:
            raise AGIError("GET DATA failed", reply)
        if reply.raw_result == "" and reply.data == "timeout":
            return None
        return reply.raw_result

    async def wait_for_digit(self, timeout_ms: int) -> str:
        """The digit pressed, or "" on timeout."""
        reply = await self._media("WAIT FOR DIGIT", int(timeout_ms))
        return self._digit(reply, "WAIT FOR DIGIT")

    async def record_file(
        self,
        path: str,
        fmt: str,
        escape_digits: str,
        timeout_ms: int,
        *,
        beep: bool = True,
        silence_s: int | None = None,
    ) -> AGIReply:
        """Record; the reply has result (0 or the escape digit's code), data ("timeout"/"dtmf"), endpos."""
        args: list[str | int] = [path, fmt, Quoted(escape_digits), int(timeout_ms)]
        if beep:
            args.append("BEEP")
        if silence_s is not None:
            args.append(f"s={int(silence_s)}")
        reply = await self._media("RECORD FILE", *args)
        if reply.result == -1:
            raise AGIError(f"RECORD FILE failed: {reply.text}", reply)
        return reply

    async def say_digits(self, digits: str, escape: str = "") -> str:
        reply = await self._media("SAY DIGITS", digits, Quoted(escape))
        return self._digit(reply, "SAY DIGITS")

    async def say_number(self, n: int, escape: str = "") -> str:
        reply = await self._media("SAY NUMBER", int(n), Quoted(escape))
        return self._digit(reply, "SAY NUMBER")

    async def exec(self, app: str, *args: str) -> int:
        """Run a dialplan application; its args are joined with ','. Returns the app's result.

        A Dial that was answered and then ended by the callee returns -1 with the caller still up, so
        -1 is returned, not raised; check ``hungup`` or the next command's 511. -2 (no such
        application) raises AGIError.
        """
        if not app.isidentifier():
            raise ValueError(f"not an application name: {app!r}")
        cmd_args = [",".join(args)] if args else []
        reply = await self.send("EXEC", app, *cmd_args)
        if reply.result == -2:
            raise AGIError(f"no such application: {app}", reply)
        if reply.result is None:
            raise AGIError(f"EXEC {app}: unexpected reply {reply.text}", reply)
        return reply.result

    async def playback(self, *files: str) -> None:
        """Play prompts in ONE round trip (``EXEC Playback(a&b)``), not interruptible, like STREAM FILE
        with no escape digits. A missing file is skipped by Asterisk (PLAYBACKSTATUS=FAILED)."""
        _check_app_files(files)
        reply = await self._media("EXEC", "Playback", "&".join(files))
        if reply.result not in (0, -1):
            raise AGIError(f"Playback failed: {reply.text}", reply)

    async def read(self, var: str, files: Sequence[str], max_digits: int,
                   timeout_s: float) -> tuple[str, str]:
        """Prompts that any key interrupts, then digits, in two round trips whatever the number of prompts:
        ``EXEC Read(var,a&b&c,max,,1,timeout)`` and one GET FULL VARIABLE for READSTATUS and the digits.

        Returns (READSTATUS, digits): ("OK", "1"); ("OK", "") when `#` was the first key; ("TIMEOUT", "")
        for silence. Raises AGIHangup if the channel hung up.
        """
        _check_app_files(files)
        if not var.isidentifier():
            raise ValueError(f"not a variable name: {var!r}")
        await self._media("EXEC", "Read", f"{var},{'&'.join(files)},{int(max_digits)},,1,{timeout_s:g}")
        value = await self.get_full_variable(f"${{READSTATUS}}|${{{var}}}") or ""
        status, _, digits = value.partition("|")
        if status == "HANGUP":       # Read answers 200 result=0 on a hang-up and says so only here
            raise AGIHangup("Read: the channel hung up")
        return status, digits

    async def channel_status(self) -> int:
        reply = await self.send("CHANNEL STATUS")
        if reply.result is None or reply.result < 0:
            raise AGIError(f"CHANNEL STATUS failed: {reply.text}", reply)
        return reply.result

    async def verbose(self, msg: str, level: int = 1) -> None:
        await self.send("VERBOSE", Quoted(msg), int(level))

    async def hangup(self) -> None:
        """Hang the channel up. Already dead (511) counts as done."""
        with contextlib.suppress(AGIHangup):
            await self.send("HANGUP")

    async def close(self) -> None:
        """Half-close (Asterisk answers with HANGUP and closes), read briefly until EOF, then close."""
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        try:
            if not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()
            if not self._input_done:
                end = self._input_end = self._loop.create_future()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._close_grace):
                        await end
        except (ConnectionError, OSError):
            pass
        finally:
            self._end_input("eof")
            transport.close()
            with contextlib.suppress(TimeoutError):
                await self._conn.wait_lost(1.0)


# ---------------------------------------------------------------------------- server


class AllowList:
    """Peer addresses allowed to connect (FastAGI has no authentication). Empty allows nobody."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)
        self._seen: dict[str, bool] = {}  # a few Asterisk boxes connect thousands of times a minute

    def allows(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            if len(self._seen) >= 4096:
                self._seen.clear()
            known = self._seen[host] = self._allows(host)
        return known

    def _allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


def _label(command: str, args: Sequence[str | int]) -> str:
    if command == "EXEC" and args:
        return f"EXEC {args[0]}"
    return command


def _debug_enabled() -> bool:
    """Whether the configured wrapper logs debug, without binding a logger (binding is the cost)."""
    check = getattr(structlog.get_config()["wrapper_class"], "is_enabled_for", None)
    if check is None:
        return True
    try:
        return bool(check(None, logging.DEBUG))  # the filtering classes only compare levels
    except Exception:
        return True


class _AGIConnection(asyncio.Protocol):
    """One FastAGI connection: allow-list, env block with a deadline, then lines to the channel.

    A protocol rather than streams: each reply line resolves the waiting command directly, which
    saves a reader task, a readline and a task switch per round trip.
    """

    def __init__(self, server: AGIServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer = "?"
        self.channel: AGIChannel | None = None
        self.write_paused = False
        self._buf = b""
        self._heard = False          # any byte received
        self._parser: EnvParser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Future[None] | None = None
        self._lost = False
        self._lost_waiter: asyncio.Future[None] | None = None

    # -- set-up ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        peername = transport.get_extra_info("peername")
        if not peername:     # reset before its address could be read (getpeername() failed)
            self._vanished("reset before its address could be read")
            self.transport.abort()
            return
        self.peer = str(peername[0])
        if not server.allow.allows(self.peer):
            server.refused += 1
            log.warning("agi.refused", peer=self.peer, reason="not in agi_allow")
            self.transport.abort()
            return
        self._parser = EnvParser()
        server._env_pending.add(self)
        self._timer = asyncio.get_running_loop().call_later(server.env_timeout, self._env_timeout)

    def _env_timeout(self) -> None:
        if self._parser is None or self.channel is not None:
            return
        self._parser = None
        self.server._env_pending.discard(self)
        self.server.rejected += 1
        log.warning("agi.env_timeout", peer=self.peer, timeout=self.server.env_timeout)
        self.transport.abort()

    def _reject(self, exc: Exception) -> None:
        if self._parser is None:
            return
        self._parser = None
        self._stop_env_wait()
        if self._heard:
            self.server.rejected += 1
            log.warning("agi.env_rejected", peer=self.peer, error=str(exc))
        else:
            self._vanished(f"closed before sending anything ({type(exc).__name__})")
        self.transport.abort()

    def _vanished(self, what: str) -> None:
        """A peer that reset or closed before saying anything (a port probe, a client that gave up):
        not a stranger nor a protocol error. Counted, and logged at debug only: a storm of them (a
        reset burst) would drown the log and says nothing a counter does not."""
        self.server.vanished += 1
        log.debug("agi.connection_vanished", peer=self.peer, what=what, count=self.server.vanished)

    def _stop_env_wait(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server._env_pending.discard(self)

    def _env_line(self, line: bytes) -> None:
        parser = self._parser
        assert parser is not None
        try:
            if not parser.feed(line):
                return
            env = parser.result()
        except EnvError as exc:
            self._reject(exc)
            return
        self._open_channel(env)

    def _open_channel(self, env: Env) -> None:
        self._parser = None
        self._stop_env_wait()
        server = self.server
        channel = self.channel = AGIChannel(
            self, env, self.peer,
            hangup_grace=server.hangup_grace, close_grace=server.close_grace,
            deadlines=server.deadlines,
        )
        task = asyncio.get_running_loop().create_task(server._session(channel))
        server._sessions.add(task)
        task.add_done_callback(server._sessions.discard)

    # -- input ---------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._heard = True
        buf = self._buf + data if self._buf else data
        limit = self.server.line_limit
        start = 0
        parser = self._parser
        if parser is not None and not parser.vars and self.channel is None:
            end = buf.find(b"\n\n")            # the whole env block in hand: parse it in one go
            if 0 <= end < limit:
                env = parse_env_block(buf[:end + 2])
                if env is not None:
                    start = end + 2
                    self._open_channel(env)
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if nl - start > limit:
                self._over_limit()
                return
            line = buf[start:nl + 1]
            start = nl + 1
            channel = self.channel
            if channel is not None:
                channel._on_line(line)
                if channel._input_done:
                    self._buf = b""
                    return
            elif self._parser is not None:
                self._env_line(line)
            else:
                self._buf = b""
                return
        rest = buf[start:] if start else buf
        if len(rest) > limit:
            self._over_limit()
            return
        self._buf = rest

    def _over_limit(self) -> None:
        self._buf = b""
        if self.channel is not None:
            self.channel._protocol_error(ValueError("line over the stream limit"))
        else:
            self._reject(EnvError("env line too long"))

    def eof_received(self) -> bool:
        if self.channel is not None:
            self.channel._end_input("eof")
        else:
            self._reject(EnvError("env block ended without a line terminator"))
        return True       # keep our half open: the flow may still be closing

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self.channel is not None:
            if exc is not None and not self.channel._input_done:
                self.channel._log.info("agi.connection_error", error=type(exc).__name__)
            self.channel._end_input("connection-error" if exc is not None else "eof")
        elif self._parser is not None:
            self._reject(exc or EnvError("connection closed before the env block ended"))
        self._stop_env_wait()
        for fut in (self._drain, self._lost_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)

    # -- output --------------------------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        if self.write_paused:
            if self._drain is None or self._drain.done():
                self._drain = asyncio.get_running_loop().create_future()
            await self._drain
            if self._lost:
                raise ConnectionResetError("connection lost")

    async def wait_lost(self, timeout: float) -> None:
        if self._lost:
            return
        if self._lost_waiter is None:
            self._lost_waiter = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._lost_waiter)


class CommandTiming(Protocol):
    """Where command latencies go: by command word (EXEC's application), never an argument."""

    def command(self, label: str, seconds: float) -> None: ...
    def dial(self, since_env: float) -> None: ...


class AGIServer:
    """FastAGI listener: allow-list, env block with a deadline, routing by script name."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        allow: Sequence[str],
        env_timeout: float = 5.0,
        hangup_grace: float = 0.3,
        close_grace: float = 1.0,
        deadlines: Deadlines | None = None,
        line_limit: int = LINE_LIMIT,
    ) -> None:
        self.routes = {k.strip("/"): v for k, v in routes.items()}
        self.allow = AllowList(allow)
        self.env_timeout = env_timeout
        self.hangup_grace = hangup_grace
        self.close_grace = close_grace
        self.deadlines = deadlines or Deadlines()
        self.line_limit = line_limit
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self._env_pending: set[_AGIConnection] = set()
        self.timing: CommandTiming | None = None   # latency hook (the controller's metrics)
        self.refused = 0
        self.rejected = 0
        self.vanished = 0       # closed or reset by the peer before it sent anything

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AGIConnection(self), host, port, backlog=4096, reuse_address=True
        )
        log.info("agi.listening", host=host, port=self.port)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, give running calls ``grace`` seconds, then cancel them."""
        if self._server is not None:
            self._server.close()
        if self._sessions:
            _, pending = await asyncio.wait(set(self._sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for conn in list(self._env_pending):      # still sending their env block: drop them
            conn._parser = None
            conn._stop_env_wait()
            conn.transport.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _session(self, channel: AGIChannel) -> None:
        handler = self.routes.get(channel.script)
        try:
            if handler is None:
                log.warning("agi.unknown_route", peer=channel.peer, script=channel.script,
                            channel=channel.channel_name)
                return
            await handler(channel)
        except AGIHangup as exc:
            channel._log.info("agi.flow_ended_by_hangup", detail=str(exc))
        except asyncio.CancelledError:
            channel._log.warning("agi.session_cancelled")
            raise
        except Exception:
            channel._log.exception("agi.handler_failed")
        finally:
            await channel.close()
