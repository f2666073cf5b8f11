"""Durable per-call state in Redis, so that any controller instance can screen, meter or settle a call.

One hash per call (`apc:{Cnn}:call:<id>`) plus, per partition, a sorted set of unsettled calls scored by
their hold's lease expiry (`apc:{Cnn}:live`) for recovery and adoption. A call's hash and its index entry
share the partition's hash tag `{Cnn}` (nn = crc32(call id) mod 16), so on a Redis Cluster a call lives
on one slot: every script below touches that one key, and a master failing over stalls only the calls
of its partitions, not the index of all of them. First-writer-wins fields (accepted_at, ended_at) make
the end of a call a single fact that every instance agrees on, so the settlement they compute from it is
the same and its ledger op id replays instead of charging twice.

Also the PIN failure counters: they live in Redis so that a lockout holds across calls and instances.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from ledger import Script, Transport, make_script
from ledger.keys import key_slot, partition_of
from ledger.redisclient import cluster_seeds, credentials

CALL_PARTITIONS = 16                 # fixed: a call's key is derived from its id by every instance
HEARTBEAT_KEY = "apc:instance:{}"    # one key per instance: a single-key command on any cluster node
PINFAIL_KEY = "apc:pinfail:{}:{}"
STATE_TTL_SLACK = 7 * 24 * 3600      # keep a settled call's state a week for support and replays
FIRST_WRITE = ("accepted_at", "ended_at", "end_reason")   # absent until set once (HSETNX)


@dataclass
class CallState:
    """The fields of one call; stored as strings in a Redis hash."""

    call_id: str
    facility_id: str = ""
    station: str = ""
    inmate: str = ""
    lang: str = "en"
    dialled: str = ""
    e164: str = ""
    call_class: str = ""
    account: str = ""
    hold_amount: int = 0
    pay_amount: int = 0                 # one call paid by card: the authorization (flows/one_call.py)
    max_seconds: int = 0
    warning_seconds: int = 0
    increment: int = 60
    capped_by: str = ""
    quoted_at: float = 0.0
    available: int = 0
    privileged: bool = False
    recorded: bool = False
    name_file: str = ""
    caller_channel: str = ""
    instance: str = ""
    created_at: float = 0.0
    dial_at: float = 0.0
    answered_at: float = 0.0
    accepted_at: float = 0.0
    screen_result: str = ""
    captured_k: int = 0
    captured: int = 0
    ended_at: float = 0.0
    end_reason: str = ""
    funds_cut: bool = False
    settled: bool = False
    settled_total: int = 0
    outcome: str = ""

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[f.name] = "1" if value else "0"
            elif isinstance(value, float):
                out[f.name] = repr(value)
            else:
                out[f.name] = str(value)
        return out

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> CallState:
        data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            default = f.default
            if isinstance(default, bool):
                kwargs[f.name] = value == "1"
            elif isinstance(default, int):
                kwargs[f.name] = int(value or 0)
            elif isinstance(default, float):
                kwargs[f.name] = float(value or 0.0)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)


def call_key(call_id: str) -> str:
    return f"apc:{{C{partition_of(call_id, CALL_PARTITIONS):02d}}}:call:{call_id}"


def live_key(partition: int) -> str:
    return f"apc:{{C{partition:02d}}}:live"


def live_key_of(call_id: str) -> str:
    return live_key(partition_of(call_id, CALL_PARTITIONS))


LIVE_KEYS = tuple(live_key(p) for p in range(CALL_PARTITIONS))
CALL_KEY_PATTERN = "apc:{C??}:call:*"


def _script(name: str) -> Script:
    source = resources.files("callcontrol").joinpath("lua", f"callstate_{name}.lua").read_text()
    return make_script(f"callstate_{name}", source)


# Each is one atomic step on a call's hash (callcontrol/lua/callstate_<name>.lua says what and why).
_SCRIPTS = {name: _script(name) for name in (
    "capture", "accept", "finish", "first_write", "pinfail", "answered", "claim")}


def _pairs(flat: list[Any]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _url_of(client: aioredis.Redis) -> str:
    """The URL of a redis-py client's pool (unix socket or TCP), for the pipelined hot-path client."""
    kw = client.connection_pool.connection_kwargs
    db = int(kw.get("db", 0) or 0)
    auth = ""
    if kw.get("password"):
        auth = f"{kw.get('username') or ''}:{kw['password']}@"
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={db}"
    return f"redis://{auth}{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{db}"


class CallStore:
    """Async access to call state and PIN failure counters on one shared Redis client."""

    def __init__(self, client: Any, *, timeout: float = 5.0, url: str = "") -> None:
        # `r` (redis-py) serves the occasional commands (heartbeat, recovery scans, tests); every call's
        # own reads and writes go through one auto-pipelined connection (the ledger's transport):
        # commands from concurrent calls share socket writes, which costs a fraction of redis-py's
        # per-command pool, lock and parser overhead.
        self.r = client
        self.timeout = timeout          # no reply for this long: the connection fails closed
        self._url = url or _url_of(client)
        self.cluster = cluster_seeds(self._url) is not None
        self._fast_client: Transport | None = None
        self._fast_loop: asyncio.AbstractEventLoop | None = None

    async def _fast(self) -> Transport:
        loop = asyncio.get_running_loop()
        t = self._fast_client
        if t is None or self._fast_loop is not loop:
            t = self._fast_client = Transport(self._url, cluster=self.cluster, timeout=self.timeout)
            self._fast_loop = loop
        return t

    def _slot(self, key: str) -> int:
        return key_slot(key) if self.cluster else 0

    async def _cmd(self, *args: str) -> Any:
        """One command whose key is args[1], routed to the key's slot."""
        return await (await self._fast()).command(self._slot(args[1]), *args)

    async def _eval(self, name: str, key: str, *args: str) -> Any:
        return await (await self._fast()).script(_SCRIPTS[name], self._slot(key), [key], list(args))

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 256, timeout: float = 5.0) -> CallStore:
        seeds = cluster_seeds(url)
        if seeds is None:
            pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5)
            return cls(aioredis.Redis(connection_pool=pool), timeout=timeout)
        # redis-py's cluster client for the occasional commands (deposit trail, one-call records,
        # heartbeats): it follows MOVED/ASK and re-reads the slot map when a node is lost.
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        user, password = credentials(url)
        client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in seeds], username=user or None,
                              password=password or None, max_connections=max_connections,
                              socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, timeout=timeout, url=url)

    async def close(self) -> None:
        if self._fast_client is not None:
            await self._fast_client.close()
            self._fast_client = None
        await self.r.aclose()

    # -- calls ------------------------------------------------------------------------------------
    async def create(self, state: CallState, lease_expires_at: float, ttl_seconds: int) -> None:
        key = call_key(state.call_id)
        mapping = state.to_hash()
        for name in FIRST_WRITE:
            if not getattr(state, name):
                del mapping[name]
        flat = [item for kv in mapping.items() for item in kv]
        t, slot = await self._fast(), self._slot(key)
        # One write: the three commands (one slot) are pipelined on the shared connection, in this order.
        await asyncio.gather(
            t.command(slot, "HSET", key, *flat),
            t.command(slot, "EXPIRE", key, str(ttl_seconds + STATE_TTL_SLACK)),
            t.command(slot, "ZADD", live_key_of(state.call_id), repr(float(lease_expires_at)), state.call_id),
        )

    async def get(self, call_id: str) -> CallState | None:
        raw = await self._cmd("HGETALL", call_key(call_id))
        return CallState.from_hash(_pairs(raw)) if raw else None

    async def answered(self, call_id: str, at: float) -> CallState | None:
        """The call as it stood when its recipient answered (None when unknown); `answered_at` is stored
        unless the call has already ended or been settled. One round trip for screening's start."""
        raw = await self._eval("answered", call_key(call_id), repr(at))
        return CallState.from_hash(_pairs(raw)) if raw else None

    async def update(self, call_id: str, **values: Any) -> None:
        state = CallState(call_id=call_id, **values)
        full = state.to_hash()
        flat = [item for k in values for item in (k, full[k])]
        await self._cmd("HSET", call_key(call_id), *flat)

    async def first_write(self, call_id: str, name: str, value: float | str) -> str:
        """Set a field only if unset; return the value that stands (ours or an earlier writer's)."""
        text = repr(value) if isinstance(value, float) else str(value)
        stood = await self._eval("first_write", call_key(call_id), name, text)
        return text if stood is None else str(stood)

    async def accept(self, call_id: str, at: float) -> float | None:
        """Record the recipient's acceptance once; returns the acceptance time that stands, or None
        when the call has already ended (nothing to bill)."""
        stood = await self._eval("accept", call_key(call_id), repr(at))
        return float(stood) if stood else None

    async def finish(self, call_id: str, ended_at: float, reason: str) -> CallState | None:
        """Fix the call's end once (first writer wins); returns the state with the end that stands."""
        raw = await self._eval("finish", call_key(call_id), repr(ended_at), reason)
        return CallState.from_hash(_pairs(raw)) if raw else None

    async def claim(self, call_id: str, owner: str, adopter: str) -> bool:
        """Take over an unsettled call from `owner` (gone); False when another instance took it first."""
        return bool(await self._eval("claim", call_key(call_id), owner, adopter))

    async def record_capture(self, call_id: str, k: int, captured_total: int) -> int:
        return int(await self._eval("capture", call_key(call_id), str(k), str(captured_total)))

    async def mark_settled(self, call_id: str, total: int, outcome: str) -> None:
        key = call_key(call_id)
        t, slot = await self._fast(), self._slot(key)
        await asyncio.gather(
            t.command(slot, "HSET", key, "settled", "1", "settled_total", str(total), "outcome", outcome),
            t.command(slot, "ZREM", live_key_of(call_id), call_id),
        )

    async def live_calls(self) -> list[tuple[str, float]]:
        """Every partition's unsettled calls; raises while any partition's slot does not answer (a
        recovery pass then waits for the next round rather than judge from part of the index)."""
        parts = await asyncio.gather(*(self._cmd("ZRANGE", k, "0", "-1", "WITHSCORES") for k in LIVE_KEYS))
        return [(m, float(s)) for flat in parts for m, s in zip(flat[::2], flat[1::2], strict=True)]

    async def drop_live(self, call_id: str) -> None:
        """Take a settled call out of the live index (its removal was lost, e.g. with Redis' AOF tail)."""
        await self._cmd("ZREM", live_key_of(call_id), call_id)

    # -- controller instances ---------------------------------------------------------------------
    async def heartbeat(self, instance: str, ttl_seconds: int) -> None:
        await self.r.set(HEARTBEAT_KEY.format(instance), "1", ex=ttl_seconds)

    async def end_heartbeat(self, instance: str) -> None:
        await self.r.delete(HEARTBEAT_KEY.format(instance))

    async def alive(self, instance: str) -> bool:
        """Is that instance's heartbeat still there?"""
        return bool(await self.r.exists(HEARTBEAT_KEY.format(instance)))

    async def ping(self) -> None:
        """Raises while Redis does not answer. On a cluster: while no node gives the slot map (each
        slot's own calls then fail or succeed on their own, so a settlement retry runs per slot)."""
        if self.cluster:
            await (await self._fast()).refresh_slots()
        else:
            await self.r.ping()

    async def server_info(self) -> dict[str, Any]:
        """Redis' INFO server section (run_id, uptime_in_seconds). On a cluster the run ids of every
        node joined and the youngest uptime: a node restarted empty (no replica had its data) shows."""
        if not self.cluster:
            info: dict[str, Any] = await self.r.info("server")
            return info
        per_node: dict[str, Any] = await self.r.info("server", target_nodes="primaries")
        infos = [i for i in per_node.values() if isinstance(i, dict)] if per_node and all(
            isinstance(i, dict) for i in per_node.values()) else [per_node]
        return {"run_id": ",".join(sorted(str(i.get("run_id", "")) for i in infos)),
                "uptime_in_seconds": min(int(i.get("uptime_in_seconds", 0)) for i in infos)}

    # -- PIN failures -----------------------------------------------------------------------------
    async def pin_failures(self, facility_id: str, who: str) -> int:
        value = await self._cmd("GET", PINFAIL_KEY.format(facility_id, who))
        return int(value or 0)

    async def add_pin_failure(self, facility_id: str, who: str, window_seconds: int) -> int:
        key = PINFAIL_KEY.format(facility_id, who)
        return int(await self._eval("pinfail", key, str(max(1, int(window_seconds)))))

    async def clear_pin_failures(self, facility_id: str, who: str) -> None:
        await self._cmd("DEL", PINFAIL_KEY.format(facility_id, who))


def unsettled_ended(r: Any, partitions: int, now: float) -> list[str]:
    """Calls that are over but not settled, or whose hold is still pending (sync redis-py client, decoded
    replies). Over: its end is stored, or its hold's lease has passed (no call outlives its lease)."""
    from ledger.keys import Keys, partition_of

    lease = {m: float(s) for key in LIVE_KEYS for m, s in r.zrange(key, 0, -1, withscores=True)}
    names = ("ended_at", "settled", "account", "hold_amount")
    found: list[str] = []
    keys = list(r.scan_iter(match=CALL_KEY_PATTERN, count=1000))
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        pipe = r.pipeline(transaction=False)
        for key in chunk:
            pipe.hmget(key, *names)
        rows = pipe.execute()
        pipe = r.pipeline(transaction=False)
        ended: list[tuple[str, str]] = []
        for key, (ended_at, settled, account, hold_amount) in zip(chunk, rows, strict=True):
            call_id = key.partition(":call:")[2]
            over = bool(ended_at) or lease.get(call_id, now) < now
            if not over:
                continue
            if settled != "1":
                found.append(f"call {call_id}: over (ended_at {ended_at or 'unknown'}) but not settled")
            if account and int(hold_amount or 0):
                ended.append((call_id, account))
                pipe.hget(Keys(partition_of(account, partitions)).account(account), f"h:{call_id}")
        for (call_id, account), raw in zip(ended, pipe.execute(), strict=True):
            if raw and raw.split("|")[2] == "pending":
                found.append(f"call {call_id}: over but its hold on {account} is still pending")
    return found
