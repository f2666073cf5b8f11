"""The asyncio Ledger: validates input, then runs exactly one Lua script per operation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from ledger import validate as v
from ledger.errors import BadInput, LedgerInternal, UnknownAccount, error_from_code
from ledger.keys import Keys, account_id_for, block_scope, call_scope, key_slot, partition_of
from ledger.scripts import SCRIPTS
from ledger.transport import Transport, open_transport
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


class Ledger:
    """One instance is shared by every call of a process; operations are coroutine-safe."""

    def __init__(self, transport: Transport, *, partitions: int, max_amount: int,
                 idempotency_ttl: int) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self._t = transport
        self.partitions = partitions
        self.max_amount = max_amount
        self._ttl = str(int(idempotency_ttl))
        self._keys = [Keys(p) for p in range(partitions)]
        self._slots = [key_slot(k.journal) for k in self._keys]

    @classmethod
    async def connect(cls, url: str, *, partitions: int = 16, max_amount: int = 100_000,
                      cluster: bool = False, idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL,
                      timeout: float = 5.0) -> Ledger:
        transport = await open_transport(url, cluster=cluster, timeout=timeout)
        return cls(transport, partitions=partitions, max_amount=max_amount, idempotency_ttl=idempotency_ttl)

    async def close(self) -> None:
        await self._t.close()

    # --- plumbing -------------------------------------------------------------------------------
    def _partition(self, name: str) -> int:
        return partition_of(name, self.partitions)

    async def _run(self, name: str, part: int, scope: str, op_id: str, fp_parts: tuple[str, ...],
                   op_keys: list[str], args: list[str], now: float | None = None) -> str:
        keys = self._keys[part]
        now_ms = str(int((time.time() if now is None else now) * 1000))
        reply = await self._t.script(
            SCRIPTS[name], self._slots[part],
            [keys.op(scope, op_id), keys.journal, *op_keys],
            [op_id, fingerprint(name, scope, *fp_parts), now_ms, self._ttl, scope, *args])
        if isinstance(reply, str) and reply:
            if reply[0] == "=":
                return reply[1:]
            if reply[0] == "!":
                code, _, message = reply[1:].partition("|")
                raise error_from_code(code, message)
        raise LedgerInternal(f"unexpected reply from {name} script: {reply!r:.200}")

    def _account(self, op_id: str, account_id: str) -> tuple[int, Keys]:
        v.check_id(op_id, "operation id")
        v.check_id(account_id, "account id")
        part = self._partition(account_id)
        return part, self._keys[part]

    # --- accounts -------------------------------------------------------------------------------
    async def open_account(self, op_id: str, facility_id: str, number_e164: str, owner: str = "") -> str:
        v.check_id(op_id, "operation id")
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        v.check_text(owner, "owner")
        account_id = account_id_for(facility_id, number_e164)
        part = self._partition(account_id)
        keys = self._keys[part]
        await self._run("open", part, account_id, op_id, (facility_id, number_e164, owner),
                        [keys.account(account_id), keys.accts], [facility_id, number_e164, owner])
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
        part, keys = self._account(op_id, account_id)
        amount = v.check_amount(amount, self.max_amount)
        v.check_text(source, "source")
        v.check_text(reference, "reference")
        res = await self._run("deposit", part, account_id, op_id, (str(amount), source, reference),
                              [keys.account(account_id)], [str(amount), source, reference])
        return parse_balance(account_id, res)

    async def refund(self, op_id: str, account_id: str, amount: int, *, reason: str = "") -> Balance:
        part, keys = self._account(op_id, account_id)
        amount = v.check_amount(amount, self.max_amount)
        v.check_text(reason, "reason")
        res = await self._run("refund", part, account_id, op_id, (str(amount), reason),
                              [keys.account(account_id)], [str(amount), reason])
        return parse_balance(account_id, res)

    async def adjust(self, op_id: str, account_id: str, delta: int, *, reason: str) -> Balance:
        part, keys = self._account(op_id, account_id)
        delta = v.check_delta(delta, self.max_amount)
        v.check_text(reason, "reason", required=True)
        res = await self._run("adjust", part, account_id, op_id, (str(delta), reason),
                              [keys.account(account_id)], [str(delta), reason])
        return parse_balance(account_id, res)

    async def freeze(self, op_id: str, account_id: str, *, reason: str = "") -> Balance:
        part, keys = self._account(op_id, account_id)
        v.check_text(reason, "reason")
        res = await self._run("freeze", part, account_id, op_id, (reason,), [keys.account(account_id)],
                              [reason])
        return parse_balance(account_id, res)

    async def unfreeze(self, op_id: str, account_id: str) -> Balance:
        part, keys = self._account(op_id, account_id)
        res = await self._run("unfreeze", part, account_id, op_id, (), [keys.account(account_id)], [])
        return parse_balance(account_id, res)

    async def close_account(self, op_id: str, account_id: str, *, reason: str = "") -> Balance:
        part, keys = self._account(op_id, account_id)
        v.check_text(reason, "reason")
        res = await self._run("close", part, account_id, op_id, (reason,), [keys.account(account_id)],
                              [reason])
        return parse_balance(account_id, res)

    # --- holds ----------------------------------------------------------------------------------
    async def hold(self, op_id: str, account_id: str, hold_id: str, amount: int, *, lease_seconds: int,
                   meta: dict[str, str] | None = None) -> Balance:
        part, keys = self._account(op_id, account_id)
        v.check_id(hold_id, "hold id")
        amount = v.check_amount(amount, self.max_amount)
        lease = v.check_lease(lease_seconds)
        meta_s = v.meta_json(meta)
        expires = f"{time.time() + lease:.3f}"
        res = await self._run("hold", part, account_id, op_id, (hold_id, str(amount), str(lease), meta_s),
                              [keys.account(account_id), keys.hexp], [hold_id, str(amount), expires, meta_s])
        return parse_balance(account_id, res)

    async def capture(self, op_id: str, account_id: str, hold_id: str, amount: int) -> HoldState:
        part, keys = self._account(op_id, account_id)
        v.check_id(hold_id, "hold id")
        amount = v.check_amount(amount, self.max_amount)
        res = await self._run("capture", part, account_id, op_id, (hold_id, str(amount)),
                              [keys.account(account_id)], [hold_id, str(amount)])
        return parse_hold(account_id, hold_id, res)

    async def settle(self, op_id: str, account_id: str, hold_id: str, total: int) -> HoldState:
        part, keys = self._account(op_id, account_id)
        v.check_id(hold_id, "hold id")
        total = v.check_total(total, self.max_amount)
        res = await self._run("settle", part, account_id, op_id, (hold_id, str(total)),
                              [keys.account(account_id)], [hold_id, str(total)])
        return parse_hold(account_id, hold_id, res)

    async def void(self, op_id: str, account_id: str, hold_id: str, *, reason: str = "") -> HoldState:
        part, keys = self._account(op_id, account_id)
        v.check_id(hold_id, "hold id")
        v.check_text(reason, "reason")
        res = await self._run("void", part, account_id, op_id, (hold_id, reason),
                              [keys.account(account_id)], [hold_id, reason])
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

        Also drops the records of holds resolved longer ago than the idempotency TTL."""
        now = time.time() if now is None else now
        reaped: list[HoldState] = []
        for part, keys in enumerate(self._keys):
            while True:
                members = await self._t.command(self._slots[part], "ZRANGEBYSCORE", keys.hexp, "-inf",
                                                f"{now:.3f}", "LIMIT", "0", str(REAP_BATCH))
                done = await asyncio.gather(*(self._expire(part, keys, m, now) for m in members))
                reaped += [h for h in done if h is not None]
                if len(members) < REAP_BATCH:
                    break
        return reaped

    async def _expire(self, part: int, keys: Keys, member: str, now: float) -> HoldState | None:
        account_id, _, hold_id = member.partition("|")
        res = await self._run("expire", part, account_id, f"!expire:{hold_id}", (hold_id,),
                              [keys.account(account_id), keys.hexp], [hold_id], now=now)
        return None if res == "-" else parse_hold(account_id, hold_id, res)

    # --- call records and number blocks -----------------------------------------------------------
    async def record_call(self, op_id: str, record: dict[str, Any]) -> None:
        v.check_id(op_id, "operation id")
        rec = v.call_record(record, self.max_amount)
        call_id = str(rec["call_id"])
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        part = self._partition(call_id)
        await self._run("call", part, call_scope(call_id), op_id, (body,), [], [body, call_id])

    async def set_block(self, op_id: str, facility_id: str, number_e164: str, blocked: bool, *,
                        source: str = "") -> None:
        v.check_id(op_id, "operation id")
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        if type(blocked) is not bool:
            raise BadInput("blocked must be a bool")
        v.check_text(source, "source")
        part = self._partition(account_id_for(facility_id, number_e164))
        flag = "1" if blocked else "0"
        await self._run("block", part, block_scope(facility_id, number_e164), op_id, (flag, source),
                        [self._keys[part].block(facility_id, number_e164)],
                        [facility_id, number_e164, flag, source])

    async def is_blocked(self, facility_id: str, number_e164: str) -> bool:
        v.check_id(facility_id, "facility id")
        v.check_e164(number_e164)
        part = self._partition(account_id_for(facility_id, number_e164))
        found = await self._t.command(self._slots[part], "EXISTS",
                                      self._keys[part].block(facility_id, number_e164))
        return bool(found)

    # --- benchmark baseline -------------------------------------------------------------------------
    async def _noop(self, part: int = 0) -> str:
        keys = self._keys[part]
        return await self._t.script(SCRIPTS["noop"], self._slots[part],
                                    [keys.op("bench", "noop"), keys.journal],
                                    ["noop", "0" * 32, "0", self._ttl, "bench"])
