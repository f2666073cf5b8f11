"""The asyncio Ledger: validates input, then runs exactly one Lua script per operation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, NamedTuple

from ledger import validate as v
from ledger.errors import BadInput, LedgerInternal, UnknownAccount, error_from_code
from ledger.keys import Keys, account_id_for, block_scope, call_scope, key_slot, partition_of
from ledger.scripts import SCRIPTS
from ledger.transport import Transport, bulk, open_transport
from ledger.types import Balance, HoldState

DEFAULT_IDEMPOTENCY_TTL = 7 * 86400  # replay window; documented in docs/ledger.md
REAP_BATCH = 500


def fingerprint(*parts: str) -> str:
    """What the operation id promises: the same id must always come with the same payload."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def parse_balance(account_id: str, res: str) -> Balance:
    posted, held, state = res.split("|")
    p, h = int(posted), int(held)
    return Balance(account_id, p, h, p - h, state)


def hold_from_field(account_id: str, hold_id: str, raw: str) -> HoldState:
    """Decode an account hash's "h:<hold id>" field: amount|captured|status|expires|review|meta."""
    amount, captured, status, expires, _review, meta = raw.split("|", 5)
    return HoldState(account_id, hold_id, int(amount), int(captured), status, float(expires),
                     json.loads(meta))


def parse_hold(account_id: str, hold_id: str, res: str) -> HoldState:
    amount, captured, status, expires, meta = res.split("|", 4)
    return HoldState(account_id, hold_id, int(amount), int(captured), status, float(expires),
                     json.loads(meta))


class _Account(NamedTuple):
    """What an operation needs to know about an account id, computed once per id (see Ledger._acct)."""

    slot: int
    head: tuple[int, bytes]       # Ledger._head of the account's hash and the journal
    hold_head: tuple[int, bytes]  # the same with the hold queue as third key


ACCOUNT_CACHE = 20_000   # account ids one Ledger remembers (~0.5 kB each); restarts empty when full


class Ledger:
    """One instance is shared by every call of a process; operations are coroutine-safe."""

    def __init__(self, transport: Transport, *, partitions: int, max_amount: int,
                 idempotency_ttl: int) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self._t = transport
        self.partitions = partitions
        self.max_amount = v.check_max_amount(max_amount)
        self._ttl = str(int(idempotency_ttl))
        self._keys = [Keys(p) for p in range(partitions)]
        self._slots = [key_slot(k.journal) for k in self._keys]
        self._accounts: dict[str, _Account] = {}

    @classmethod
    async def connect(cls, url: str, *, partitions: int = 16, max_amount: int = 100_000,
                      cluster: bool = False, idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL,
                      timeout: float = 5.0) -> Ledger:
        v.check_max_amount(max_amount)        # before connecting: a refused Ledger leaves nothing open
        transport = await open_transport(url, cluster=cluster, timeout=timeout)
        return cls(transport, partitions=partitions, max_amount=max_amount, idempotency_ttl=idempotency_ttl)

    async def close(self) -> None:
        await self._t.close()

    # --- plumbing -------------------------------------------------------------------------------
    def _partition(self, name: str) -> int:
        return partition_of(name, self.partitions)

    def _head(self, keys: tuple[str, ...], scope: str) -> tuple[int, bytes]:
        """The leading arguments of a script and their count: numkeys, keys (the first holds the
        idempotency record, the second is the journal), ARGV[1] scope and ARGV[2] TTL (see
        ledger/lua/_prelude.lua), as RESP bulk strings: an account keeps its heads, so most of a command
        is packed once."""
        return len(keys) + 3, bulk(str(len(keys)), *keys, scope, self._ttl)

    async def _run(self, name: str, slot: int, head: tuple[int, bytes], scope: str, op_id: str,
                   fp_parts: tuple[str, ...], args: tuple[str, ...], now: float | None = None,
                   ms: int | None = None) -> str:
        """`now` (s) or `ms` (the same in whole ms, as given) is the script's clock; default time.time()."""
        now_ms = str(ms if ms is not None else int((time.time() if now is None else now) * 1000))
        fp = fingerprint(name, scope, *fp_parts)
        count, packed = head
        reply = await self._t.run(SCRIPTS[name], slot, count + 3 + len(args),
                                  packed + bulk(op_id, fp, now_ms, *args))
        if type(reply) is str and reply:
            if reply[0] == "=":
                return reply[1:]
            if reply[0] == "!":
                code, _, message = reply[1:].partition("|")
                raise error_from_code(code, message)
        raise LedgerInternal(f"unexpected reply from {name} script: {reply!r:.200}")

    def _acct(self, op_id: str, account_id: str) -> _Account:
        """Checks both ids; an account id's partition, slot and key names are computed once per Ledger."""
        v.check_id(op_id, "operation id")
        acct = self._accounts.get(account_id) if type(account_id) is str else None
        if acct is None:
            v.check_id(account_id, "account id")
            part = partition_of(account_id, self.partitions)
            keys = self._keys[part]
            if len(self._accounts) >= ACCOUNT_CACHE:
                self._accounts.clear()
            key = keys.account(account_id)
            acct = self._accounts[account_id] = _Account(
                self._slots[part], self._head((key, keys.journal), account_id),
                self._head((key, keys.journal, keys.hexp), account_id))
        return acct

    async def _account_op(self, name: str, a: _Account, op_id: str, account_id: str,
                          fp_parts: tuple[str, ...], args: tuple[str, ...]) -> Balance:
        """An operation on the account alone that replies with its balance."""
        res = await self._run(name, a.slot, a.head, account_id, op_id, fp_parts, args)
        return parse_balance(account_id, res)

    # --- accounts -------------------------------------------------------------------------------
    async def open_account(self, op_id: str, facility_id: str, number_e164: str, owner: str = "") -> str:
        v.check_id(op_id, "operation id")
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        v.check_text(owner, "owner")
        account_id = account_id_for(facility_id, number_e164)
        a = self._acct(op_id, account_id)
        keys = self._keys[self._partition(account_id)]
        head = self._head((keys.account(account_id), keys.journal, keys.accts), account_id)
        await self._run("open", a.slot, head, account_id, op_id,
                        (facility_id, number_e164, owner), (facility_id, number_e164, owner))
        return account_id

    async def find_account(self, facility_id: str, number_e164: str) -> str | None:
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        account_id = account_id_for(facility_id, number_e164)
        part = self._partition(account_id)
        found = await self._t.command(self._slots[part], "EXISTS", self._keys[part].account(account_id))
        return account_id if found else None

    async def balance(self, account_id: str) -> Balance:
        v.check_id(account_id, "account id")
        part = self._partition(account_id)
        state, posted, held = await self._t.command(self._slots[part], "HMGET",
                                                    self._keys[part].account(account_id), "s", "p", "h")
        if state is None:
            raise UnknownAccount(f"no account {account_id}")
        return Balance(account_id, int(posted), int(held), int(posted) - int(held), state)

    async def deposit(self, op_id: str, account_id: str, amount: int, *, source: str = "",
                      reference: str = "") -> Balance:
        a = self._acct(op_id, account_id)
        amt = str(v.check_amount(amount, self.max_amount))
        v.check_text(source, "source")
        v.check_text(reference, "reference")
        return await self._account_op("deposit", a, op_id, account_id, (amt, source, reference),
                                      (amt, source, reference))

    async def refund(self, op_id: str, account_id: str, amount: int, *, reason: str = "") -> Balance:
        a = self._acct(op_id, account_id)
        amt = str(v.check_amount(amount, self.max_amount))
        v.check_text(reason, "reason")
        return await self._account_op("refund", a, op_id, account_id, (amt, reason), (amt, reason))

    async def adjust(self, op_id: str, account_id: str, delta: int, *, reason: str) -> Balance:
        a = self._acct(op_id, account_id)
        d = str(v.check_delta(delta, self.max_amount))
        v.check_text(reason, "reason", required=True)
        return await self._account_op("adjust", a, op_id, account_id, (d, reason), (d, reason))

    async def freeze(self, op_id: str, account_id: str, *, reason: str = "") -> Balance:
        a = self._acct(op_id, account_id)
        v.check_text(reason, "reason")
        return await self._account_op("freeze", a, op_id, account_id, (reason,), (reason,))

    async def unfreeze(self, op_id: str, account_id: str) -> Balance:
        return await self._account_op("unfreeze", self._acct(op_id, account_id), op_id, account_id, (), ())

    async def close_account(self, op_id: str, account_id: str, *, reason: str = "") -> Balance:
        a = self._acct(op_id, account_id)
        v.check_text(reason, "reason")
        return await self._account_op("close", a, op_id, account_id, (reason,), (reason,))

    # --- holds ----------------------------------------------------------------------------------
    async def hold(self, op_id: str, account_id: str, hold_id: str, amount: int, *, lease_seconds: int,
                   meta: dict[str, str] | None = None) -> Balance:
        a = self._acct(op_id, account_id)
        v.check_id(hold_id, "hold id")
        amt = str(v.check_amount(amount, self.max_amount))
        lease = v.check_lease(lease_seconds)
        meta_s = v.meta_json(meta)
        now = time.time()
        expires = f"{now + lease:.3f}"
        res = await self._run("hold", a.slot, a.hold_head, account_id, op_id,
                              (hold_id, amt, str(lease), meta_s), (hold_id, amt, expires, meta_s), now)
        return parse_balance(account_id, res)

    async def capture(self, op_id: str, account_id: str, hold_id: str, amount: int) -> HoldState:
        a = self._acct(op_id, account_id)
        v.check_id(hold_id, "hold id")
        amt = str(v.check_amount(amount, self.max_amount))
        res = await self._run("capture", a.slot, a.head, account_id, op_id, (hold_id, amt),
                              (hold_id, amt))
        return parse_hold(account_id, hold_id, res)

    async def settle(self, op_id: str, account_id: str, hold_id: str, total: int) -> HoldState:
        a = self._acct(op_id, account_id)
        v.check_id(hold_id, "hold id")
        tot = str(v.check_total(total, self.max_amount))
        res = await self._run("settle", a.slot, a.head, account_id, op_id, (hold_id, tot),
                              (hold_id, tot))
        return parse_hold(account_id, hold_id, res)

    async def void(self, op_id: str, account_id: str, hold_id: str, *, reason: str = "") -> HoldState:
        a = self._acct(op_id, account_id)
        v.check_id(hold_id, "hold id")
        v.check_text(reason, "reason")
        res = await self._run("void", a.slot, a.head, account_id, op_id, (hold_id, reason),
                              (hold_id, reason))
        return parse_hold(account_id, hold_id, res)

    async def hold_info(self, account_id: str, hold_id: str) -> HoldState | None:
        v.check_id(account_id, "account id")
        v.check_id(hold_id, "hold id")
        part = self._partition(account_id)
        (raw,) = await self._t.command(self._slots[part], "HMGET", self._keys[part].account(account_id),
                                       f"h:{hold_id}")
        return None if raw is None else hold_from_field(account_id, hold_id, raw)

    async def reap_expired(self, now: float | None = None) -> list[HoldState]:
        """Void every pending hold whose lease has passed, flagged for review; returns those holds.

        Also drops the records of holds resolved longer ago than the idempotency TTL.

        One cutoff in whole ms serves both the queue query and the script, so every hold listed as due is
        due for the script too (a rounded query bound once listed holds the script then kept, and the
        loop fetched them again for ever). Should a round still remove nothing, the loop stops."""
        ms = int((time.time() if now is None else now) * 1000)
        cutoff = f"{ms // 1000}.{ms % 1000:03d}"
        reaped: list[HoldState] = []
        for part, keys in enumerate(self._keys):
            previous: list[str] | None = None
            while True:
                members = await self._t.command(self._slots[part], "ZRANGEBYSCORE", keys.hexp, "-inf",
                                                cutoff, "LIMIT", "0", str(REAP_BATCH))
                if not members or members == previous:      # the last round removed nothing
                    break
                done = await asyncio.gather(*(self._expire(part, keys, m, ms) for m in members))
                reaped += [h for h in done if h is not None]
                if len(members) < REAP_BATCH:
                    break
                previous = members
        return reaped

    async def hold_queue(self) -> tuple[int, float | None]:
        """(pending holds, earliest lease expiry in epoch seconds or None): for monitoring."""
        count, earliest = 0, None
        for part, keys in enumerate(self._keys):
            slot = self._slots[part]
            count += int(await self._t.command(slot, "ZCARD", keys.hexp))
            first = await self._t.command(slot, "ZRANGE", keys.hexp, "0", "0", "WITHSCORES")
            if first:
                score = float(first[1])
                earliest = score if earliest is None else min(earliest, score)
        return count, earliest

    async def oldest_unsynced(self, group: str = "sql-sync") -> float | None:
        """Epoch seconds of the oldest journal entry the SQL sync has not acknowledged (None: none).

        An entry is waiting while it is pending in the sync's consumer group or not yet delivered to it;
        stream ids carry their append time in ms."""
        oldest: int | None = None
        for part, keys in enumerate(self._keys):
            slot = self._slots[part]
            try:
                pending = await self._t.command(slot, "XPENDING", keys.journal, group)
                info = await self._t.command(slot, "XINFO", "GROUPS", keys.journal)
            except Exception as exc:
                if "no such key" in str(exc).lower():
                    continue                 # nothing journalled in this partition yet
                raise
            ids = [str(pending[1])] if pending and int(pending[0]) else []
            groups = [dict(zip(g[::2], g[1::2], strict=True)) for g in info]
            mine = next((g for g in groups if str(g.get("name")) == group), None)
            start = f"({mine['last-delivered-id']}" if mine else "-"
            after = await self._t.command(slot, "XRANGE", keys.journal, start, "+", "COUNT", "1")
            if after:
                ids.append(str(after[0][0]))
            for sid in ids:
                ms = int(sid.split("-", 1)[0])
                oldest = ms if oldest is None else min(oldest, ms)
        return None if oldest is None else oldest / 1000

    async def _expire(self, part: int, keys: Keys, member: str, ms: int) -> HoldState | None:
        account_id, _, hold_id = member.partition("|")
        head = self._head((keys.account(account_id), keys.journal, keys.hexp), account_id)
        res = await self._run("expire", self._slots[part], head, account_id, f"!expire:{hold_id}",
                              (hold_id,), (hold_id,), ms=ms)
        return None if res == "-" else parse_hold(account_id, hold_id, res)

    # --- call records and number blocks -----------------------------------------------------------
    async def record_call(self, op_id: str, record: dict[str, Any]) -> None:
        v.check_id(op_id, "operation id")
        rec = v.call_record(record, self.max_amount)
        call_id = str(rec["call_id"])
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        part = self._partition(call_id)
        scope = call_scope(call_id)
        keys = self._keys[part]
        head = self._head((keys.op(scope, op_id), keys.journal), scope)
        await self._run("call", self._slots[part], head, scope, op_id, (body,), (body, call_id))

    async def set_block(self, op_id: str, facility_id: str, number_e164: str, blocked: bool, *,
                        source: str = "", inmate_id: str = "") -> None:
        """Block (or unblock) calls from the facility to the number: all of them, or with `inmate_id` only
        that inmate's. The two are independent: an inmate block stays when the facility is unblocked."""
        v.check_id(op_id, "operation id")
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        if type(blocked) is not bool:
            raise BadInput("blocked must be a bool")
        v.check_text(source, "source")
        if inmate_id != "":
            v.check_id(inmate_id, "inmate id")
        part = self._partition(account_id_for(facility_id, number_e164))
        flag = "1" if blocked else "0"
        scope = block_scope(facility_id, number_e164, inmate_id)
        keys = self._keys[part]
        flag_key = keys.block(facility_id, number_e164, inmate_id)
        op_keys: tuple[str, ...] = (keys.op(scope, op_id), keys.journal, flag_key)
        args: tuple[str, ...] = (facility_id, number_e164, flag, source)
        if inmate_id:
            op_keys += (keys.blocked_inmates(facility_id, number_e164),)
            args += (inmate_id,)
        await self._run("block", self._slots[part], self._head(op_keys, scope), scope, op_id, (flag, source),
                        args)

    async def is_blocked(self, facility_id: str, number_e164: str, inmate_id: str = "") -> bool:
        """Whether the facility's calls to the number are blocked, or (inmate_id) that inmate's are: the
        facility's block or the inmate's, read by one EXISTS."""
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        part = self._partition(account_id_for(facility_id, number_e164))
        keys = self._keys[part]
        if inmate_id:
            v.check_id(inmate_id, "inmate id")
            found = await self._t.command(self._slots[part], "EXISTS", keys.block(facility_id, number_e164),
                                          keys.block(facility_id, number_e164, inmate_id))
        else:
            found = await self._t.command(self._slots[part], "EXISTS", keys.block(facility_id, number_e164))
        return bool(found)

    async def blocked_inmates(self, facility_id: str, number_e164: str) -> dict[str, str]:
        """The inmates blocked from calling the number at the facility, each with its block's source."""
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        part = self._partition(account_id_for(facility_id, number_e164))
        flat = await self._t.command(self._slots[part], "HGETALL",
                                     self._keys[part].blocked_inmates(facility_id, number_e164))
        return dict(zip(flat[::2], flat[1::2], strict=True))
