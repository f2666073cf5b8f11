"""Writing a batch of journal entries to SQL, idempotently and in bulk.

Journal rows are keyed by their stream position and transfer rows by (account, op id), so a redelivered
entry adds nothing; account, hold, call-record and block rows carry the state after the operation and are
upserted only when newer (account version, or journal position), so a replayed or late reclaimed entry
never rolls a row back.

PostgreSQL: rows that are new by construction (every journal and transfer row, accounts opened and holds
placed in this batch) are COPYed straight into their tables inside a savepoint. That is the common case and
costs the server a plain insert; if any of them is already there (a redelivery, a reclaimed entry, a worker
that died after its commit), the savepoint is rolled back and the whole batch takes the upsert path. Upserts
COPY their rows into a session temp table and move them with one INSERT ... SELECT. SQLite: one executemany
of the upsert per table.

Entries are split and their values passed on as the text the journal holds (the COPY format is text, and
SQLite's column affinity converts): building Entry objects, ints and an ORM per row cost more than the
database work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from ledger import journal as j
from ledger.journal import DP, HOLD_ID, OP, OP_ID, POSTED, SCOPE, TEXT1, TEXT2, TS, VER

Row = tuple[Any, ...]           # text values (None for NULL); call rows also carry ints and bools
Raw = tuple[int, str, str]      # (partition, stream id, entry) as read from the journal


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update: tuple[str, ...] = ()                # empty: insert only
    newer: str = ""                             # column that must grow for an update to apply
    plain: bool = True                          # every value is str (no NULL, no int or bool)

    @property
    def names(self) -> str:
        return ", ".join(f'"{c}"' for c in self.columns)

    def upsert(self, source: str) -> str:
        """INSERT INTO the table from `source` (VALUES or SELECT), keeping what is there unless newer."""
        conflict = "ON CONFLICT (" + ", ".join(f'"{k}"' for k in self.key) + ") DO "
        if not self.update:
            return f"INSERT INTO {self.name} ({self.names}) {source} {conflict}NOTHING"
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in self.update)
        where = f" WHERE {self.name}.{self.newer} < excluded.{self.newer}" if self.newer else ""
        return f"INSERT INTO {self.name} ({self.names}) {source} {conflict}UPDATE SET {sets}{where}"


JOURNAL = Table("ledger_journal", ("partition", "stream_id", "scope", "op", "ts", "entry"),
                ("partition", "stream_id"))
TRANSFERS = Table("ledger_transfers", ("account_id", "op_id", "kind", "amount", "posted_after", "ver",
                                       "hold_id", "note", "reference", "ts"), ("account_id", "op_id"),
                  plain=False)
ACCOUNTS = Table("ledger_accounts", ("account_id", "facility_id", "number_e164", "owner", "state", "posted",
                                     "held", "ver", "updated_ts"),
                 ("account_id",), ("facility_id", "number_e164", "owner", "state", "posted", "held", "ver",
                                   "updated_ts"), "ver")
HOLDS = Table("ledger_holds", ("account_id", "hold_id", "amount", "captured", "status", "expires_at",
                               "review", "meta", "ver", "created_ts", "updated_ts"),
              ("account_id", "hold_id"), ("amount", "captured", "status", "expires_at", "review", "ver",
                                          "updated_ts"), "ver")
CALL_COLUMNS = ("call_id", "facility_id", "inmate_id", "account_id", "dialled", "number_e164", "call_class",
                "outcome", "reason", "started_at", "answered_at", "accepted_at", "ended_at", "billed_seconds",
                "amount", "recorded", "privileged", "jid", "updated_ts")
CALLS = Table("call_records", CALL_COLUMNS, ("call_id",), CALL_COLUMNS[1:], "jid", plain=False)
BLOCKS = Table("number_blocks", ("facility_id", "number_e164", "blocked", "source", "jid", "updated_ts"),
               ("facility_id", "number_e164"), ("blocked", "source", "jid", "updated_ts"), "jid")
INMATE_BLOCKS = Table("inmate_blocks", ("facility_id", "number_e164", "inmate_id", "blocked", "source", "jid",
                                        "updated_ts"),
                      ("facility_id", "number_e164", "inmate_id"), ("blocked", "source", "jid", "updated_ts"),
                      "jid")
# A hold's meta and creation time come from its "hold" entry, which a crashed worker may deliver after a
# later entry of the same hold (whose row then has meta ''): this fills them in without touching the newer
# state. Only the upsert path needs it: the COPY path writes holds whose "hold" entry is in the batch.
HOLD_ORIGIN_PG = ("UPDATE ledger_holds AS h SET meta = s.meta, created_ts = s.created_ts "
                  "FROM stage_ledger_holds AS s WHERE h.account_id = s.account_id AND h.hold_id = s.hold_id "
                  "AND h.meta = '' AND s.meta <> ''")
HOLD_ORIGIN_SQLITE = ("UPDATE ledger_holds SET meta = ?, created_ts = ? "
                      "WHERE account_id = ? AND hold_id = ? AND meta = ''")


@dataclass
class Batch:
    """A batch of entries reduced to rows: every journal and transfer row, the newest state per account,
    hold, call and block. `fresh_*` rows were created in this batch, so SQL should not have them yet."""
    journal: list[Row] = field(default_factory=list)
    transfers: list[Row] = field(default_factory=list)
    fresh_accounts: list[Row] = field(default_factory=list)
    accounts: list[Row] = field(default_factory=list)
    fresh_holds: list[Row] = field(default_factory=list)
    holds: list[Row] = field(default_factory=list)
    calls: list[Row] = field(default_factory=list)
    blocks: list[Row] = field(default_factory=list)
    inmate_blocks: list[Row] = field(default_factory=list)

    @classmethod
    def collect(cls, entries: Iterable[Raw], keep_journal: bool = True) -> Batch:
        b = cls()
        journal, transfers = b.journal, b.transfers
        account_ops, posting_ops = j.ACCOUNT_OPS, j.POSTING_OPS
        sep = j.SEP
        latest_account: dict[str, tuple[int, list[str]]] = {}
        opened: set[str] = set()
        latest_hold: dict[tuple[str, str], tuple[int, list[str]]] = {}
        hold_origin: dict[tuple[str, str], list[str]] = {}
        latest_call: dict[str, tuple[str, str, str]] = {}
        latest_block: dict[tuple[str, ...], tuple[str, str, str, str]] = {}
        for p, sid, raw in entries:
            f = raw.split(sep)
            op, scope = f[OP], f[SCOPE]
            if keep_journal:
                journal.append((str(p), sid, scope, op, f[TS], raw))
            if op in account_ops:
                ver = int(f[VER])
                prev = latest_account.get(scope)
                if prev is None or ver > prev[0]:
                    latest_account[scope] = (ver, f)
                if op == "open":
                    opened.add(scope)
                hold_id = f[HOLD_ID]
                if hold_id:
                    key = (scope, hold_id)
                    prev = latest_hold.get(key)
                    if prev is None or ver > prev[0]:
                        latest_hold[key] = (ver, f)
                    if op == "hold":
                        hold_origin[key] = f
                if op in posting_ops and int(f[DP]) != 0:
                    transfers.append((scope, f[OP_ID], op, f[DP], f[POSTED], f[VER], hold_id or None,
                                      f[TEXT1], f[TEXT2] if op == "deposit" else "", f[TS]))
            elif op == "call":
                jid = j.sortable_id(sid)
                call_id = f[j.CALL_ID]
                if call_id not in latest_call or jid > latest_call[call_id][0]:
                    latest_call[call_id] = (jid, f[j.TS], f[j.CALL_RECORD])
            elif op == "block":
                jid = j.sortable_id(sid)
                # (facility, number) for the whole facility, (facility, number, inmate) for one inmate
                bkey = tuple(f[j.BLOCK_FACILITY:j.BLOCK_FLAG]) + tuple(f[j.BLOCK_INMATE:j.BLOCK_INMATE + 1])
                if bkey not in latest_block or jid > latest_block[bkey][0]:
                    latest_block[bkey] = (jid, f[j.TS], f[j.BLOCK_FLAG], f[j.BLOCK_SOURCE])

        for scope, (_, f) in latest_account.items():
            (b.fresh_accounts if scope in opened else b.accounts).append(
                (scope, f[j.FACILITY], f[j.NUMBER], f[j.OWNER], f[j.STATE], f[j.POSTED], f[j.HELD], f[j.VER],
                 f[j.TS]))
        for key, (_, f) in latest_hold.items():
            origin = hold_origin.get(key)
            (b.fresh_holds if origin else b.holds).append(
                (key[0], key[1], f[j.HOLD_AMOUNT], f[j.HOLD_CAPTURED], f[j.HOLD_STATUS], f[j.HOLD_EXPIRES],
                 f[j.HOLD_REVIEW], origin[j.TEXT2] if origin else "", f[j.VER],
                 origin[j.TS] if origin else f[j.TS], f[j.TS]))
        for jid, ts, body in latest_call.values():
            rec = json.loads(body)
            b.calls.append((*(rec[c] for c in CALL_COLUMNS[:-2]), jid, ts))
        for bkey, (jid, ts, flag, source) in latest_block.items():
            (b.blocks if len(bkey) == 2 else b.inmate_blocks).append(
                (*bkey, "1" if flag == "1" else "0", source, jid, ts))
        return b

    def merge_fresh(self) -> None:
        """Treat the fresh rows like any other (they were not new after all)."""
        self.accounts += self.fresh_accounts
        self.holds += self.fresh_holds
        self.fresh_accounts, self.fresh_holds = [], []


def apply_entries(conn: Connection, entries: Iterable[Raw], *, keep_journal: bool = True) -> None:
    """Write a batch of journal entries; safe to call again with any of them, in any order.

    keep_journal=False skips the ledger_journal audit copy (history and the restoring of idempotency
    records by rebuild need it; balances, transfers, holds, calls and blocks do not)."""
    batch = Batch.collect(entries, keep_journal)
    if conn.dialect.name == "postgresql":
        _apply_postgresql(conn, batch)
    else:
        _apply_sqlite(conn, batch)


def _apply_sqlite(conn: Connection, b: Batch) -> None:
    b.merge_fresh()
    for table, rows in ((JOURNAL, b.journal), (TRANSFERS, b.transfers), (ACCOUNTS, b.accounts),
                        (HOLDS, b.holds), (CALLS, b.calls), (BLOCKS, b.blocks),
                        (INMATE_BLOCKS, b.inmate_blocks)):
        if rows:
            conn.exec_driver_sql(table.upsert("VALUES (" + ", ".join("?" * len(table.columns)) + ")"), rows)
    origins = [(h[7], h[9], h[0], h[1]) for h in b.holds if h[7]]
    if origins:
        conn.exec_driver_sql(HOLD_ORIGIN_SQLITE, origins)


def _apply_postgresql(conn: Connection, b: Batch) -> None:
    from psycopg.errors import UniqueViolation

    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with conn.begin_nested():
            for table, rows in ((JOURNAL, b.journal), (TRANSFERS, b.transfers), (ACCOUNTS, b.fresh_accounts),
                                (HOLDS, b.fresh_holds)):
                if rows:
                    with cur.copy(f"COPY {table.name} ({table.names}) FROM STDIN") as copy:
                        copy.write(_copy_text(rows, table.plain))
    except UniqueViolation:             # some of it was written before: upsert all of it
        b.merge_fresh()
        _staged(cur, JOURNAL, b.journal)
        _staged(cur, TRANSFERS, b.transfers)
        origin = HOLD_ORIGIN_PG
    else:
        origin = ""                     # every hold with its "hold" entry here was COPYed with it
    _staged(cur, ACCOUNTS, b.accounts)
    _staged(cur, HOLDS, b.holds, then=origin)
    _staged(cur, CALLS, b.calls)
    _staged(cur, BLOCKS, b.blocks)
    _staged(cur, INMATE_BLOCKS, b.inmate_blocks)


def _staged(cur: Any, table: Table, rows: Sequence[Row], then: str = "") -> None:
    """COPY the rows into a session temp table (one stream, parsed by the server), then one
    INSERT ... SELECT into the real table, in the caller's transaction; `then` runs before the stage
    is emptied."""
    if not rows:
        return
    stage = f"stage_{table.name}"
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {table.names} FROM {table.name} "
                "WITH NO DATA")
    with cur.copy(f"COPY {stage} ({table.names}) FROM STDIN") as copy:
        copy.write(_copy_text(rows, table.plain))
    if table.update:
        cur.execute(table.upsert(f"SELECT {table.names} FROM {stage}"))
    else:
        # Insert-only rows: an anti-join is cheaper than ON CONFLICT's speculative insertion. Two
        # workers racing on the same entry make one transaction fail on the key; its entries stay
        # unacknowledged and the retry finds them present.
        match = " AND ".join(f's."{k}" = t."{k}"' for k in table.key)
        cur.execute(f"INSERT INTO {table.name} ({table.names}) SELECT DISTINCT ON ({', '.join(table.key)}) "
                    f"{table.names} FROM {stage} s WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {table.name} t WHERE {match})")
    if then:
        cur.execute(then)
    cur.execute(f"TRUNCATE {stage}")


def _copy_text(rows: Sequence[Row], plain: bool) -> str:
    """Rows in COPY's text format. Free text never holds tabs, newlines or other control characters
    (validated at the ledger's edge), so escaping backslashes is all that is needed; None is marked with
    NUL (which text cannot hold either) and turned into \\N after that."""
    if plain:
        text = "\n".join(map("\t".join, rows)) + "\n"
    else:
        text = "\n".join("\t".join([_text(v) for v in row]) for row in rows) + "\n"
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    return text.replace("\x00", "\\N") if not plain else text


def _text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if value is None:
        return "\x00"
    return str(value)       # int; bool as True/False, which PostgreSQL's boolean input takes
