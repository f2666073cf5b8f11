"""asyncio AMI client: login, ActionID correlation, event lists, events, keepalive, reconnect.

The controller uses AMI as a watchdog (hang up a call whose FastAGI session is lost, check channels).
One reader task per connection dispatches responses to waiting actions and events to subscribers; a
supervisor task reconnects with capped exponential back-off and logs in again. A refused login raises
AMIAuthError from :meth:`AMIClient.connect`; later refusals are retried at the capped delay only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from callcontrol.asterisk.ami_wire import (
    AMIProtocolError,
    HeaderValue,
    Message,
    MessageParser,
    encode_action,
    headers_from,
    parse_banner,
)

__all__ = ["AMIAuthError", "AMIClient", "AMIConnectionError", "AMIError", "Message"]

log = structlog.get_logger()

EventCallback = Callable[[Message], Awaitable[None] | None]


class AMIError(Exception):
    """``Response: Error`` (or another failure response); ``.message`` is Asterisk's Message header."""

    def __init__(self, message: str, response: Message | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class AMIAuthError(AMIError):
    """Login refused (``Message: Authentication failed``); Asterisk closes the connection after it."""


class AMIConnectionError(ConnectionError):
    """Not connected, or the connection dropped while an action was waiting."""


@dataclass
class _Pending:
    future: asyncio.Future[Message]
    response: Message | None = None
    events: list[Message] = field(default_factory=list)


def default_action_ids(prefix: str | None = None) -> Callable[[], str]:
    """``cc-<random>-1``, ``cc-<random>-2``...: unique per client so replies never cross clients."""
    tag = prefix or f"cc-{secrets.token_hex(4)}"
    counter = itertools.count(1)
    return lambda: f"{tag}-{next(counter)}"


class AMIClient:
    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: bool | str | None = True,
        action_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        action_id_factory: Callable[[], str] | None = None,
        line_limit: int = 64 * 1024,
    ) -> None:
        self.host, self.port = host, port
        self.username = username
        self._secret = secret
        self.events = events
        self.action_timeout = action_timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._next_id = action_id_factory or default_action_ids()
        self._line_limit = line_limit
        self._handlers: dict[str, list[EventCallback]] = {}
        self._pending: dict[str, _Pending] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self._closing = False
        self.banner: str | None = None
        self.connects = 0  # successful logins, for monitoring and tests
        self.attempts = 0  # connection attempts

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        """Connect and log in once (raising on failure), then keep the connection up in the background."""
        if self._supervisor is not None:
            raise RuntimeError("already connected")
        self._closing = False
        await self._open()
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-supervisor")

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def close(self) -> None:
        """Log off (if connected) and stop reconnecting."""
        self._closing = True
        if self.connected:
            with contextlib.suppress(AMIError, AMIConnectionError, TimeoutError):
                await self.action("Logoff", timeout=2.0)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait({self._supervisor})  # unlike awaiting it, never swallows our own cancel
            self._supervisor = None
        await self._drop_connection()
        for task in list(self._callback_tasks):
            task.cancel()

    async def _open(self) -> None:
        self.attempts += 1
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=self._line_limit), self.connect_timeout
        )
        try:
            line = await asyncio.wait_for(reader.readline(), self.connect_timeout)
            self.banner = parse_banner(line)
            self._writer = writer
            self._read_task = asyncio.create_task(self._read_loop(reader), name="ami-read")
            headers: list[tuple[str, HeaderValue]] = [("Username", self.username), ("Secret", self._secret)]
            if self.events is not None:
                events = self.events
                flag = ("on" if events else "off") if isinstance(events, bool) else events
                headers.append(("Events", flag))
            try:
                await self._send("Login", headers, self.connect_timeout)
            except AMIError as exc:
                if "auth" in exc.message.lower():
                    raise AMIAuthError(exc.message, exc.response) from None
                raise
        except BaseException:
            await self._drop_connection(writer)
            raise
        self.connects += 1
        self._connected.set()
        log.info("ami.connected", host=self.host, port=self.port, banner=self.banner)
        if self.ping_interval:
            self._ping_task = asyncio.create_task(self._keepalive(self.ping_interval), name="ami-ping")

    async def _drop_connection(self, writer: asyncio.StreamWriter | None = None) -> None:
        self._connected.clear()
        writer = writer or self._writer
        self._writer = None
        for task in (self._ping_task, self._read_task):
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._ping_task = self._read_task = None
        self._fail_pending("connection closed")
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(AMIConnectionError(why))

    async def _supervise(self) -> None:
        delay = self.reconnect_initial
        while not self._closing:
            task = self._read_task
            if task is not None:
                await asyncio.wait({task})
            if self._closing:
                return
            log.warning("ami.disconnected", host=self.host, port=self.port)
            await self._drop_connection()
            while not self._closing:
                wait = delay * (0.8 + 0.4 * random.random())  # jitter: many controllers, one Asterisk
                await asyncio.sleep(wait)
                try:
                    await self._open()
                    delay = self.reconnect_initial
                    break
                except AMIAuthError as exc:
                    log.error("ami.login_refused", error=exc.message, retry_in=self.reconnect_max)
                    delay = self.reconnect_max
                except (OSError, TimeoutError, AMIError, AMIProtocolError, AMIConnectionError) as exc:
                    delay = min(delay * 2, self.reconnect_max)
                    log.warning("ami.reconnect_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)

    async def _keepalive(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._send("Ping", [], min(interval, self.action_timeout))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("ami.keepalive_failed", error=type(exc).__name__)
                if self._writer is not None:
                    self._writer.transport.abort()
                return

    # ------------------------------------------------------------------ reading

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        parser = MessageParser()
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    break
                msg = parser.feed(line)
                if msg is not None:
                    try:
                        self._dispatch(msg)
                    except Exception:  # a bug here must not end the connection
                        log.exception("ami.dispatch_failed")
        except (AMIProtocolError, ValueError) as exc:
            log.warning("ami.protocol_error", error=str(exc))
        except (ConnectionError, OSError) as exc:
            log.info("ami.connection_error", error=type(exc).__name__)
        finally:
            self._connected.clear()
            self._fail_pending("connection closed")

    def _dispatch(self, msg: Message) -> None:
        action_id = msg.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if msg.is_response:
            if pending is None:
                log.debug("ami.unmatched_response", action_id=action_id)
                return
            self._on_response(action_id, pending, msg)  # type: ignore[arg-type]
            return
        if pending is not None and pending.response is not None:  # item of an event list
            if msg.get("EventList", "").lower() == "complete":
                pending.response.events = pending.events
                pending.response.complete = msg
                del self._pending[action_id]  # type: ignore[arg-type]
                if not pending.future.done():
                    pending.future.set_result(pending.response)
            else:
                pending.events.append(msg)
            return
        self._emit(msg)

    def _on_response(self, action_id: str, pending: _Pending, msg: Message) -> None:
        kind = msg.get("Response", "").lower()
        if kind in ("success", "goodbye", "follows", "pong"):
            if msg.get("EventList", "").lower() == "start":
                pending.response = msg  # wait for the ...Complete event
                return
            del self._pending[action_id]
            if not pending.future.done():
                pending.future.set_result(msg)
            return
        del self._pending[action_id]
        if not pending.future.done():
            text = msg.get("Message", f"Response: {msg.get('Response')}")
            pending.future.set_exception(AMIError(text, msg))

    def _emit(self, msg: Message) -> None:
        name = msg.get("Event")
        if name is None:
            return
        for callback in [*self._handlers.get(name.lower(), ()), *self._handlers.get("*", ())]:
            try:
                result = callback(msg)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._callback_tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                log.exception("ami.event_callback_failed", event_name=name)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ami.event_callback_failed", error=repr(task.exception()))

    # ------------------------------------------------------------------ events

    def on_event(self, name: str, callback: EventCallback) -> None:
        """Call ``callback(message)`` for each event ``name`` (case-insensitive) or ``"*"`` for all.

        Coroutine callbacks run as tasks; exceptions are logged and never stop the reader.
        """
        self._handlers.setdefault(name.lower(), []).append(callback)

    def off_event(self, name: str, callback: EventCallback) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._handlers[name.lower()].remove(callback)

    # ------------------------------------------------------------------ actions

    async def _send(
        self,
        action: str,
        headers: Iterable[tuple[str, HeaderValue]],
        timeout: float | None,
        *,
        action_id: str | None = None,
    ) -> Message:
        action_id = action_id or self._next_id()
        data = encode_action(action, action_id, headers)  # ValueError before anything is sent
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise AMIConnectionError("not connected")
        if action_id in self._pending:
            raise RuntimeError(f"duplicate ActionID {action_id}")
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = _Pending(fut)
        log.debug("ami.action", action=action, action_id=action_id)
        try:
            async with asyncio.timeout(timeout):
                writer.write(data)
                await writer.drain()
                return await fut
        except TimeoutError:  # an OSError subclass: keep it a timeout
            raise
        except (ConnectionError, OSError) as exc:
            raise AMIConnectionError(f"{action}: connection lost ({type(exc).__name__})") from None
        finally:
            self._pending.pop(action_id, None)

    async def action(
        self,
        name: str,
        headers: Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        action_id: str | None = None,
        **kwargs: HeaderValue | list[HeaderValue] | tuple[HeaderValue, ...] | None,
    ) -> Message:
        """Send an action and return its response.

        ``await ami.action("Hangup", Channel=ch, Cause=16)``. Extra headers in order via ``headers`` or a
        list value (``Variable=["A=1", "B=2"]``). For event lists (``EventList: start``) the response's
        ``events`` holds the items. Raises AMIError on ``Response: Error``, ValueError for CR/LF in a
        header (nothing sent), AMIConnectionError if not connected within the timeout, TimeoutError.
        """
        pairs = [*headers, *headers_from(kwargs)]
        if any(k.lower() == "actionid" for k, _ in pairs):
            raise ValueError("ActionID is assigned by the client (pass action_id=...)")
        encode_action(name, None, pairs)  # validate before waiting for a connection
        wait = self.action_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if not self._connected.is_set():
            if self._closing or self._supervisor is None:
                raise AMIConnectionError("not connected")
            try:
                await asyncio.wait_for(self._connected.wait(), wait)
            except TimeoutError:
                raise AMIConnectionError(f"{name}: not connected within {wait}s") from None
        return await self._send(name, pairs, max(0.0, deadline - loop.time()), action_id=action_id)

    # ------------------------------------------------------------------ helpers

    async def ping(self, timeout: float | None = None) -> Message:
        return await self.action("Ping", timeout=timeout)

    async def getvar(self, variable: str, channel: str | None = None) -> str:
        """Value of a channel (or global) variable/function. AMI gives "" for both unset and empty."""
        resp = await self.action("Getvar", Channel=channel, Variable=variable)
        return resp.get("Value", "")

    async def setvar(self, variable: str, value: str, channel: str | None = None) -> None:
        await self.action("Setvar", Channel=channel, Variable=variable, Value=value)

    async def hangup(self, channel: str, cause: int = 16) -> Message:
        return await self.action("Hangup", Channel=channel, Cause=cause)

    async def core_show_channels(self) -> list[Message]:
        """Live channels: the ``CoreShowChannel`` events of the list."""
        return (await self.action("CoreShowChannels")).events

    async def status(self, channel: str | None = None) -> list[Message]:
        return (await self.action("Status", Channel=channel)).events

    async def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int | None = None,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: dict[str, str] | None = None,
        channel_id: str | None = None,
        timeout_ms: int | None = None,
        async_: bool = True,
        response_timeout: float = 60.0,
    ) -> Message:
        """Originate a call. With ``async_`` (the default) wait for and return the OriginateResponse
        event (``Response: Success`` or ``Failure`` with ``Reason``); otherwise the action response."""
        headers: list[tuple[str, HeaderValue]] = [("Channel", channel)]
        for key, value in (("Context", context), ("Exten", exten), ("Priority", priority),
                           ("Application", application), ("Data", data), ("Timeout", timeout_ms),
                           ("CallerID", caller_id)):
            if value is not None:
                headers.append((key, value))
        if async_:
            headers.append(("Async", True))
        for k, v in (variables or {}).items():
            headers.append(("Variable", f"{k}={v}"))
        if channel_id is not None:
            headers.append(("ChannelId", channel_id))
        if not async_:
            return await self.action("Originate", headers, timeout=response_timeout)
        action_id = self._next_id()
        result: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def on_response(msg: Message) -> None:
            if msg.action_id == action_id and not result.done():
                result.set_result(msg)

        self.on_event("OriginateResponse", on_response)
        try:
            await self.action("Originate", headers, action_id=action_id)
            return await asyncio.wait_for(result, response_timeout)
        finally:
            self.off_event("OriginateResponse", on_response)
