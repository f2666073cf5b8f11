"""AMIClient over real TCP against a small loopback AMI server speaking Asterisk's framing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from callcontrol.asterisk.ami import AMIClient, AMIConnectionError, AMIError
from callcontrol.asterisk.ami_wire import Message, encode_headers, parse_messages

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


class FakeAMI:
    """Banner, Login (secret checked), Ping, CoreShowChannels list, Slow (never answered), and a
    generic Success for anything else. ``drop()`` closes every connection like a restarting Asterisk."""

    def __init__(self, secret: str = "ctlsecret") -> None:
        self.secret = secret
        self.port = 0
        self.received: list[Message] = []
        self.logins = 0
        self.connections = 0
        self.answer_pings = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> FakeAMI:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port or self.port,
                                                  reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            self._server = None
        self.drop()

    def drop(self) -> None:
        for w in list(self._writers):
            w.transport.abort()

    def push(self, *headers: tuple[str, str]) -> None:
        for w in self._writers:
            w.write(encode_headers(headers))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        writer.write(BANNER)
        buf = b""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                buf += line
                if line != b"\r\n":
                    continue
                [msg], buf = parse_messages(buf), b""
                self.received.append(msg)
                if not await self._answer(msg, writer):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, msg: Message, writer: asyncio.StreamWriter) -> bool:
        aid = ("ActionID", msg.get("ActionID", ""))

        def reply(*headers: tuple[str, str]) -> None:
            writer.write(encode_headers(headers))

        action = msg.get("Action", "").lower()
        if action == "login":
            if msg.get("Secret") != self.secret:
                await asyncio.sleep(0.05)
                reply(("Response", "Error"), aid, ("Message", "Authentication failed"))
                return False
            self.logins += 1
            reply(("Response", "Success"), aid, ("Message", "Authentication accepted"))
            writer.write(encode_headers([("Event", "FullyBooted"), ("Status", "Fully Booted")]))
        elif action == "ping":
            if self.answer_pings:
                writer.write(encode_headers([("Response", "Success"), aid, ("Ping", "Pong")]))
        elif action == "slow":
            pass
        elif action == "fail":
            writer.write(encode_headers([("Response", "Error"), aid, ("Message", "Nope")]))
        elif action == "coreshowchannels":
            writer.write(encode_headers([("Response", "Success"), aid, ("EventList", "start"),
                                         ("Message", "Channels will follow")]))
            for ch in ("Local/1@a-00000001;1", "Local/1@a-00000001;2"):
                writer.write(encode_headers([("Event", "CoreShowChannel"), aid, ("Channel", ch)]))
                writer.write(encode_headers([("Event", "Newexten"), ("Channel", "other")]))  # interleaved
            writer.write(encode_headers([("Event", "CoreShowChannelsComplete"), aid,
                                         ("EventList", "Complete"), ("ListItems", "2")]))
        elif action == "logoff":
            reply(("Response", "Goodbye"), aid, ("Message", "Thanks for all the fish."))
            return False
        else:
            writer.write(encode_headers([("Response", "Success"), aid, ("Message", "ok")]))
        await writer.drain()
        return True


def client(port: int, **kw: Any) -> AMIClient:
    kw.setdefault("ping_interval", None)
    kw.setdefault("reconnect_initial", 0.05)
    kw.setdefault("reconnect_max", 0.4)
    kw.setdefault("action_timeout", 2.0)
    return AMIClient("127.0.0.1", port, "ctl", kw.pop("secret", "ctlsecret"), **kw)


async def eventually(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def test_actions_events_and_lists() -> None:
    async def main() -> dict[str, Any]:
        srv = await FakeAMI().start()
        ami = client(srv.port)
        seen: list[str] = []
        async_seen: list[str] = []

        async def on_async(msg: Message) -> None:
            async_seen.append(msg["Channel"])

        def broken(msg: Message) -> None:
            raise RuntimeError("callback bug")

        ami.on_event("*", lambda m: seen.append(m.name))
        ami.on_event("hangup", on_async)
        ami.on_event("Hangup", broken)  # must not stop the reader
        await ami.connect()
        out: dict[str, Any] = {"pong": (await ami.ping())["Ping"]}
        out["channels"] = [m["Channel"] for m in await ami.core_show_channels()]
        srv.push(("Event", "Hangup"), ("Channel", "Local/1@a-00000001;2"), ("Cause", "16"))
        out["after"] = (await ami.action("Anything", Foo="bar"))["Message"]
        with pytest.raises(AMIError) as exc:
            await ami.action("Fail")
        out["error"] = exc.value.message
        with pytest.raises(TimeoutError):
            await ami.action("Slow", timeout=0.2)
        await eventually(lambda: async_seen)
        await ami.close()
        await srv.stop()
        out["seen"], out["async_seen"] = seen, async_seen
        out["sent"] = [m["Action"] for m in srv.received]
        return out

    out = run(main())
    assert out["pong"] == "Pong"
    assert out["channels"] == ["Local/1@a-00000001;1", "Local/1@a-00000001;2"]
    assert out["seen"] == ["FullyBooted", "Newexten", "Newexten", "Hangup"]  # list items not re-emitted
    assert out["async_seen"] == ["Local/1@a-00000001;2"]
    assert out["after"] == "ok" and out["error"] == "Nope"
    assert out["sent"] == ["Login", "Ping", "CoreShowChannels", "Anything", "Fail", "Slow", "Logoff"]


def test_header_injection_sends_nothing() -> None:
    async def main() -> list[str]:
        srv = await FakeAMI().start()
        ami = client(srv.port)
        await ami.connect()
        with pytest.raises(ValueError):
            await ami.setvar("X", "1\r\nAction: Hangup\r\nChannel: Local/1@a-00000001;2")
        with pytest.raises(ValueError):
            await ami.hangup("Local/1@a\n")
        with pytest.raises(ValueError):
            await ami.action("Ping", ActionID="mine")
        await ami.ping()
        await ami.close()
        await srv.stop()
        return [m["Action"] for m in srv.received]

    assert run(main()) == ["Login", "Ping", "Logoff"]


def test_reconnects_with_backoff_and_relogs_in() -> None:
    async def main() -> dict[str, Any]:
        srv = await FakeAMI().start()
        port = srv.port
        ami = client(port)
        await ami.connect()
        slow = asyncio.create_task(ami.action("Slow", timeout=5))
        await asyncio.sleep(0.05)
        await srv.stop()  # Asterisk goes away: listener closed, connection dropped
        t0 = time.monotonic()
        with pytest.raises(AMIConnectionError):
            await slow  # a waiting action fails at once, it is not left hanging
        failed_fast = time.monotonic() - t0
        attempts_before = ami.attempts
        await asyncio.sleep(1.0)
        attempts_down = ami.attempts - attempts_before
        waiting = asyncio.create_task(ami.ping(timeout=3))  # waits for the reconnection
        await srv.start(port)
        pong = await waiting
        await ami.close()
        await srv.stop()
        return {"failed_fast": failed_fast, "attempts_down": attempts_down, "pong": pong["Ping"],
                "logins": srv.logins, "connects": ami.connects}

    out = run(main())
    assert out["failed_fast"] < 0.5
    # 0.05 s doubling to a 0.4 s cap (+-20 % jitter) gives about 5 tries a second; a hot loop gives hundreds
    assert 3 <= out["attempts_down"] <= 8
    assert out["pong"] == "Pong" and out["logins"] == 2 and out["connects"] == 2


def test_refused_relogin_is_not_a_hot_loop() -> None:
    async def main() -> tuple[int, int]:
        srv = await FakeAMI().start()
        ami = client(srv.port, reconnect_max=0.5)
        await ami.connect()
        srv.secret = "rotated"
        srv.drop()
        await asyncio.sleep(1.2)
        attempts = ami.attempts
        await ami.close()
        await srv.stop()
        return attempts, srv.connections

    attempts, connections = run(main())
    # first retry after ~0.05 s is refused, then one try per reconnect_max (0.5 s)
    assert 2 <= attempts - 1 <= 4 and connections == attempts


def test_keepalive_detects_a_silent_server() -> None:
    async def main() -> tuple[int, int]:
        srv = await FakeAMI().start()
        ami = client(srv.port, ping_interval=0.1)
        await ami.connect()
        await asyncio.sleep(0.35)
        assert ami.connects == 1  # pings answered: stays up
        srv.answer_pings = False
        await eventually(lambda: ami.connects >= 2, 3.0)
        srv.answer_pings = True
        await ami.close()
        await srv.stop()
        return ami.connects, srv.logins

    connects, logins = run(main())
    assert connects >= 2 and logins >= 2


def test_action_when_never_connected_fails_fast() -> None:
    async def main() -> None:
        ami = client(1)
        t0 = time.monotonic()
        with pytest.raises(AMIConnectionError):
            await ami.ping()
        assert time.monotonic() - t0 < 0.1
        with pytest.raises(OSError):
            await ami.connect()  # nobody listens on port 1
        with contextlib.suppress(Exception):
            await ami.close()

    run(main())
