"""Auto-pipelining RESP client for the ledger's hot path.

Requests issued by concurrent tasks within one event-loop tick are written to the socket as one
pipeline (one write), and replies are matched to requests in order as they arrive. One connection per
Redis node is enough (Redis runs commands one at a time); the socket never waits for a round trip.

Fail closed: a lost connection, a connect failure or a reply slower than `timeout` fails every
in-flight request with LedgerUnavailable and the next request reconnects. The outcome of a failed
in-flight request is unknown; ledger operations are idempotent, so the caller retries with the same
operation id. In cluster mode requests are routed by slot; MOVED refreshes the slot map and retries,
ASK is followed once. A node that cannot be reached (a master killed, its replica not yet promoted)
fails that slot's requests closed and marks the slot map stale: the next request asks the surviving
nodes who serves the slot now, so a promoted replica takes over without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

from ledger.errors import LedgerInternal, LedgerUnavailable
from ledger.redisclient import CLUSTER_SCHEME, cluster_seeds
from ledger.scripts import SCRIPTS, Script

NOT_RUN_PREFIXES = ("LOADING", "READONLY", "MASTERDOWN", "NOAUTH", "CLUSTERDOWN", "TRYAGAIN", "BUSY")
UNAVAILABLE_PREFIXES = ("LOADING", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM",
                        "MISCONF", "NOREPLICAS", "NOAUTH")


def _pack_py(args: tuple[str | bytes, ...] | list[str | bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        raw = arg if isinstance(arg, bytes) else arg.encode()
        append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


pack = getattr(hiredis, "pack_command", _pack_py)  # the C packer is ~3x faster


def bulk(*args: str) -> bytes:
    """The RESP bulk strings of args without the array header: a piece of a command that the caller can
    keep (an account's keys) and join to others (see Transport.run)."""
    packed = pack(args)
    return packed[packed.index(b"\n") + 1:]


class _Protocol(asyncio.Protocol):
    """One connection: writes are coalesced per loop tick; replies resolve futures in FIFO order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = hiredis.Reader(encoding="utf-8")
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_progress = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_progress = self.loop.time()
        try:
            self.parser.feed(data)
            gets = self.parser.gets
            pending = self.pending
            while True:
                reply = gets()
                if reply is False:
                    break
                fut = pending.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # desynchronised: nothing can be trusted
            self.abort(f"protocol error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        err = LedgerUnavailable(f"connection to Redis lost ({exc or 'closed'}); outcome unknown, retry")
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(err)

    def abort(self, why: str) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(LedgerUnavailable(why))

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise LedgerUnavailable("connection to Redis is closed", not_applied=True)
        fut = self.loop.create_future()
        self.pending.append(fut)
        self.out.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and not self.closed and self.transport is not None:
            if len(self.pending) == len(self.out):  # nothing sent awaits a reply: Redis owes one from now
                self.last_progress = self.loop.time()
            data = b"".join(self.out)
            self.out.clear()
            self.transport.write(data)


class _Node:
    """A Redis node address and its (re)connectable connection."""

    def __init__(self, owner: Transport, host: str = "", port: int = 0, path: str = "") -> None:
        self.owner = owner
        self.host, self.port, self.path = host, port, path
        self.proto: _Protocol | None = None
        self._attempt: asyncio.Future[_Protocol] | None = None

    async def connect(self) -> _Protocol:
        """The live connection, or the outcome of the one attempt every waiting request shares.

        Single flight: when Redis accepts connections but never answers, the requests queued behind
        a reconnect fail together one timeout later, instead of one timeout after another; the next
        request after a failure starts a fresh attempt.
        """
        if self.proto is not None and not self.proto.closed:
            return self.proto
        attempt = self._attempt
        if attempt is None:
            attempt = self._attempt = asyncio.ensure_future(self._open())
            attempt.add_done_callback(self._attempt_done)
        return await asyncio.shield(attempt)     # a cancelled waiter leaves the attempt to the others

    def _attempt_done(self, attempt: asyncio.Future[_Protocol]) -> None:
        if self._attempt is attempt:
            self._attempt = None
        if not attempt.cancelled():
            attempt.exception()                  # retrieved: every waiter may have gone

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            if self.path:
                coro = loop.create_unix_connection(lambda: _Protocol(loop), self.path)
            else:
                coro = loop.create_connection(lambda: _Protocol(loop), self.host, self.port)
            _, proto = await asyncio.wait_for(coro, self.owner.timeout)
        except (OSError, TimeoutError) as exc:
            raise LedgerUnavailable(f"cannot connect to Redis at {self.path or self.host}:{self.port}: "
                                    f"{exc}", not_applied=True) from exc
        try:
            await self._setup(proto)
        except TimeoutError as exc:
            proto.abort("set-up timed out")
            raise LedgerUnavailable(f"Redis at {self.path or self.host}:{self.port} accepted the "
                                    f"connection but did not answer its set-up", not_applied=True) from exc
        except BaseException:
            proto.abort("set-up failed")
            raise
        self.proto = proto
        self.owner.start_watchdog()
        return proto

    async def _setup(self, proto: _Protocol) -> None:
        calls = []
        if self.owner.password:
            auth = ("AUTH", self.owner.username, self.owner.password) if self.owner.username else \
                ("AUTH", self.owner.password)
            calls.append(pack(auth))
        if self.owner.db:
            calls.append(pack(("SELECT", str(self.owner.db))))
        calls += [pack(("SCRIPT", "LOAD", s.source)) for s in SCRIPTS.values()]
        futs = [proto.send(c) for c in calls]
        replies = await asyncio.wait_for(asyncio.gather(*futs), self.owner.timeout)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise LedgerUnavailable(f"Redis refused connection set-up: {reply}", not_applied=True)


class Transport:
    """Routes requests to nodes (one node, or by slot in a cluster) over auto-pipelined connections."""

    def __init__(self, url: str, *, cluster: bool = False, timeout: float = 5.0) -> None:
        parsed = urlparse(url)
        self.timeout = timeout
        self.cluster = cluster
        self.username = unquote(parsed.username or "") if parsed.password else ""
        self.password = unquote(parsed.password or parsed.username or "") if (parsed.password or
                                                                                parsed.username) else ""
        query = parse_qs(parsed.query)
        seeds = cluster_seeds(url)
        self.seeds: list[_Node] = []
        if seeds is not None:
            self.cluster = cluster = True
            self.db = 0
            self.seeds = [_Node(self, host=h, port=p) for h, p in seeds]
            self.seed = self.seeds[0]
        elif parsed.scheme == "unix":
            self.db = int(query.get("db", ["0"])[0])
            self.seed = _Node(self, path=parsed.path)
        elif parsed.scheme in ("redis", ""):
            self.db = int((parsed.path or "/0").lstrip("/") or 0)
            self.seed = _Node(self, host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379)
        else:
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r} "
                             f"(use redis://, unix:// or {CLUSTER_SCHEME}://)")
        if not self.seeds:
            self.seeds = [self.seed]
        if cluster and self.db:
            raise ValueError("Redis Cluster has only database 0")
        self.nodes: dict[str, _Node] = {}
        self.slots: list[_Node | None] = [None] * 16384
        if seeds is not None:                 # one connection per node: seeds are nodes of the map
            self.nodes.update({f"{n.host}:{n.port}": n for n in self.seeds})
        self._watchdog: asyncio.TimerHandle | None = None
        self._closing = False
        self._heads: dict[str, bytes] = {}   # script sha -> bulk("EVALSHA", sha)
        self._stale = False                   # a node failed: ask the cluster for its slot map again
        self._refresh: asyncio.Future[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.cluster:
            await self.refresh_slots()
        else:
            await self.seed.connect()

    async def close(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for node in [*self.seeds, *self.nodes.values()]:
            if node._attempt is not None:
                node._attempt.cancel()
            if node.proto is not None and node.proto.transport is not None:
                node.proto.closed = True
                node.proto.transport.close()

    def start_watchdog(self) -> None:
        if self._watchdog is None and not self._closing:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(min(1.0, self.timeout / 4), self._check)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Past this check's due time the loop was busy (a GC pause, thousands of calls ending at once):
        # replies Redis sent meanwhile are still unread, so that time is not counted as its silence.
        late = max(0.0, now - self._watchdog.when()) if self._watchdog is not None else 0.0
        self._watchdog = None
        for node in [*self.seeds, *self.nodes.values()]:
            proto = node.proto
            if proto is None or proto.closed:
                continue
            proto.last_progress = min(now, proto.last_progress + late)
            # Only sent requests count: one still queued behind a busy loop is not Redis being late.
            if len(proto.pending) > len(proto.out) and now - proto.last_progress > self.timeout:
                proto.abort(f"no reply from Redis within {self.timeout}s")
        self.start_watchdog()

    # --- cluster routing ------------------------------------------------------------------------
    def _node_for_addr(self, host: str, port: int) -> _Node:
        key = f"{host}:{port}"
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = _Node(self, host=host, port=port)
        return node

    async def refresh_slots(self) -> None:
        """Ask the nodes in turn for the slot map; concurrent callers share one refresh."""
        refresh = self._refresh
        if refresh is None:
            refresh = self._refresh = asyncio.ensure_future(self._refresh_slots())
            refresh.add_done_callback(self._refresh_done)
        await asyncio.shield(refresh)

    def _refresh_done(self, refresh: asyncio.Future[None]) -> None:
        if self._refresh is refresh:
            self._refresh = None
        if not refresh.cancelled():
            refresh.exception()

    async def _refresh_slots(self) -> None:
        candidates = list(dict.fromkeys([*self.seeds, *self.nodes.values()]))
        last: Exception | None = None
        for node in candidates:
            try:
                proto = node.proto if node.proto and not node.proto.closed else await node.connect()
                reply = await asyncio.wait_for(proto.send(pack(("CLUSTER", "SLOTS"))), self.timeout)
            except (LedgerUnavailable, TimeoutError) as exc:
                last = exc
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise LedgerInternal(f"CLUSTER SLOTS refused: {reply}")
            for entry in reply:
                start, end, master = int(entry[0]), int(entry[1]), entry[2]
                host = master[0] if isinstance(master[0], str) and master[0] else node.host
                target = self._node_for_addr(host, int(master[1]))
                for slot in range(start, end + 1):
                    self.slots[slot] = target
            self._stale = False
            return
        raise LedgerUnavailable(f"no cluster node answered CLUSTER SLOTS: {last}")

    async def _proto(self, slot: int) -> _Protocol:
        node = self.seed
        if self.cluster:
            if self._stale:
                await self.refresh_slots()
            node = self.slots[slot]  # type: ignore[assignment]
            if node is None:
                await self.refresh_slots()
                node = self.slots[slot]
                if node is None:
                    raise LedgerUnavailable(f"no cluster node serves slot {slot}")
        proto = node.proto
        if proto is None or proto.closed:
            proto = await node.connect()
        return proto

    # --- requests -------------------------------------------------------------------------------
    async def execute(self, slot: int, payload: bytes) -> Any:
        """Send one packed command and return its reply; routing errors are handled here."""
        for _ in range(5):
            try:
                proto = await self._proto(slot)
                reply = await proto.send(payload)
            except LedgerUnavailable:
                self._stale = self.cluster      # that master may be gone: who serves the slot now?
                raise
            if not isinstance(reply, hiredis.ReplyError):
                return reply
            msg = str(reply)
            if msg.startswith("MOVED ") and self.cluster:
                await self.refresh_slots()
                continue
            if msg.startswith("ASK ") and self.cluster:
                host, _, port = msg.split()[2].rpartition(":")
                target = self._node_for_addr(host, int(port))
                tproto = target.proto if target.proto and not target.proto.closed else await target.connect()
                tproto.send(pack(("ASKING",)))
                reply = await tproto.send(payload)
                if not isinstance(reply, hiredis.ReplyError):
                    return reply
                msg = str(reply)
            return reply if msg.startswith("NOSCRIPT") else self._raise(msg)
        raise LedgerUnavailable("too many cluster redirections")

    @staticmethod
    def _raise(msg: str) -> Any:
        if msg.startswith(UNAVAILABLE_PREFIXES):
            # Refused before the script ran (loading, read-only replica, another script busy...); kept to
            # the refusals that certainly run nothing, the others leave the outcome open.
            raise LedgerUnavailable(f"Redis refused: {msg}", not_applied=msg.startswith(NOT_RUN_PREFIXES))
        raise LedgerInternal(f"Redis error: {msg}")

    def script(self, script: Script, slot: int, keys: Sequence[str], args: Sequence[str]) -> Awaitable[Any]:
        n = str(len(keys))
        return self._evalsha(slot, pack(("EVALSHA", script.sha, n, *keys, *args)),
                             lambda: pack(("EVAL", script.source, n, *keys, *args)))

    def run(self, script: Script, slot: int, count: int, body: bytes) -> Awaitable[Any]:
        """Like script(); body holds the bulk strings of numkeys, keys and args, `count` of them."""
        head = self._heads.get(script.sha)
        if head is None:
            head = self._heads[script.sha] = bulk("EVALSHA", script.sha)
        return self._evalsha(slot, b"*%d\r\n%b%b" % (count + 2, head, body),
                             lambda: b"*%d\r\n%b%b" % (count + 2, bulk("EVAL", script.source), body))

    async def _evalsha(self, slot: int, payload: bytes, eval_payload: Callable[[], bytes]) -> Any:
        proto = self.seed.proto
        if not self.cluster and proto is not None and not proto.closed:    # the hot path, inlined
            reply = await proto.send(payload)
            if not isinstance(reply, hiredis.ReplyError):
                return reply
            if not str(reply).startswith("NOSCRIPT"):
                self._raise(str(reply))
        else:
            reply = await self.execute(slot, payload)
        if isinstance(reply, hiredis.ReplyError):  # NOSCRIPT: the server lost its script cache
            reply = await self.execute(slot, eval_payload())
            if isinstance(reply, hiredis.ReplyError):
                self._raise(str(reply))
        return reply

    async def command(self, slot: int, *args: str) -> Any:
        reply = await self.execute(slot, pack(args))
        if isinstance(reply, hiredis.ReplyError):
            self._raise(str(reply))
        return reply


async def open_transport(url: str, *, cluster: bool, timeout: float) -> Transport:
    transport = Transport(url, cluster=cluster, timeout=timeout)
    try:
        await transport.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await transport.close()
        raise
    return transport
