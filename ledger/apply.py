"""Writing a batch of journal entries to SQL, idempotently and in bulk.

PostgreSQL: each table's rows are COPYed into a session temp table and moved with one INSERT ... SELECT;
SQLite: one executemany per table. Journal rows are keyed by their stream position and transfer rows by
(account, op id), so a redelivered entry adds nothing; account, hold, call-record and block rows carry
the state after the operation and are upserted only when newer (account version, or journal position),
so a replayed or late reclaimed entry never rolls a row back. The SQL is written out here, not built per
row by an ORM: per-row statement handling cost more than the database work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ledger import journal as j


@dataclass(frozen=True)
class Upsert:
    table: str
    columns: tuple[tuple[str, str], ...]        # (name, PostgreSQL type)
    key: tuple[str, ...]
    update: tuple[str, ...] = ()                # empty: DO NOTHING
    newer: str = ""                             # column that must grow for an update to apply

    def sql(self, dialect: str) -> str:
        names = ", ".join(f'"{c}"' for c, _ in self.columns)
        if dialect == "postgresql":
            source = "SELECT * FROM unnest(" + ", ".join(f"%b::{t}[]" for _, t in self.columns) + ")"
        else:
            source = "VALUES (" + ", ".join("?" for _ in self.columns) + ")"
        conflict = "ON CONFLICT (" + ", ".join(f'"{k}"' for k in self.key) + ") DO "
        if not self.update:
            return f"INSERT INTO {self.table} ({names}) {source} {conflict}NOTHING"
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in self.update)
        where = f" WHERE {self.table}.{self.newer} < excluded.{self.newer}" if self.newer else ""
        return f"INSERT INTO {self.table} ({names}) {source} {conflict}UPDATE SET {sets}{where}"

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if conn.dialect.name == "postgresql":
            self._copy_then_insert(conn, rows)
        else:
            conn.exec_driver_sql(self.sql("sqlite"), list(rows))

    def _copy_then_insert(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """COPY the rows into a session temp table (one stream, parsed by the server), then one
        INSERT ... SELECT ... ON CONFLICT into the real table, in the caller's transaction."""
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        stage = f"stage_{self.table}"
        names = ", ".join(f'"{c}"' for c, _ in self.columns)
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {names} FROM {self.table} "
                    "WITH NO DATA")
        with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            copy.write(_copy_text(rows))
        if self.update:
            conflict = "ON CONFLICT (" + ", ".join(f'"{k}"' for k in self.key) + ") DO "
            sets = ", ".join(f'"{c}" = excluded."{c}"' for c in self.update)
            where = f" WHERE {self.table}.{self.newer} < excluded.{self.newer}" if self.newer else ""
            cur.execute(f"INSERT INTO {self.table} ({names}) SELECT {names} FROM {stage} "
                        f"{conflict}UPDATE SET {sets}{where}")
        else:
            # Insert-only rows: an anti-join is much cheaper than ON CONFLICT's speculative insertion.
            # Two workers racing on the same entry make one transaction fail on the key; its entries
            # stay unacknowledged and the retry finds them present.
            match = " AND ".join(f's."{k}" = t."{k}"' for k in self.key)
            cur.execute(f"INSERT INTO {self.table} ({names}) SELECT DISTINCT ON ({', '.join(self.key)}) "
                        f"{names} FROM {stage} s WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {self.table} t WHERE {match})")
        cur.execute(f"TRUNCATE {stage}")


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows in COPY's text format. Free text never holds tabs, newlines or other control characters
    (validated at the ledger's edge), so escaping backslashes is all that is needed; None is marked
    with NUL (which text cannot contain either) and turned into \\N at the end."""
    text = "\n".join("\t".join([v if v.__class__ is str else _plain(v) for v in row]) for row in rows) + "\n"
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    return text.replace("\x00", "\\N") if "\x00" in text else text


def _plain(value: Any) -> str:
    if value is None:
        return "\x00"
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)


JOURNAL = Upsert("ledger_journal", (("partition", "int"), ("stream_id", "text"), ("scope", "text"),
                                    ("op", "text"), ("ts", "bigint"), ("entry", "text")),
                 ("partition", "stream_id"))
TRANSFERS = Upsert("ledger_transfers", (("account_id", "text"), ("op_id", "text"), ("kind", "text"),
                                        ("amount", "bigint"), ("posted_after", "bigint"), ("ver", "bigint"),
                                        ("hold_id", "text"), ("note", "text"), ("reference", "text"),
                                        ("ts", "bigint")), ("account_id", "op_id"))
ACCOUNTS = Upsert("ledger_accounts", (("account_id", "text"), ("facility_id", "text"),
                                      ("number_e164", "text"),
                                      ("owner", "text"), ("state", "text"), ("posted", "bigint"),
                                      ("held", "bigint"), ("ver", "bigint"), ("updated_ts", "bigint")),
                  ("account_id",), ("facility_id", "number_e164", "owner", "state", "posted", "held", "ver",
                                    "updated_ts"), "ver")
HOLDS = Upsert("ledger_holds", (("account_id", "text"), ("hold_id", "text"), ("amount", "bigint"),
                                ("captured", "bigint"), ("status", "text"), ("expires_at", "float8"),
                                ("review", "boolean"), ("meta", "text"), ("ver", "bigint"),
                                ("created_ts", "bigint"), ("updated_ts", "bigint")),
               ("account_id", "hold_id"), ("amount", "captured", "status", "expires_at", "review", "ver",
                                           "updated_ts"), "ver")
# A hold's meta and creation time come from its "hold" entry, which a crashed worker may deliver after a
# later entry of the same hold: this fills them in without touching the newer state.
HOLD_ORIGIN_PG = ("UPDATE ledger_holds AS h SET meta = u.meta, created_ts = u.ts "
                  "FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[]) "
                  "AS u(meta, ts, account_id, hold_id) "
                  "WHERE h.account_id = u.account_id AND h.hold_id = u.hold_id AND h.meta = ''")
HOLD_ORIGIN_SQLITE = ("UPDATE ledger_holds SET meta = ?, created_ts = ? "
                      "WHERE account_id = ? AND hold_id = ? AND meta = ''")
CALL_COLUMNS = ("call_id", "facility_id", "inmate_id", "account_id", "dialled", "number_e164", "call_class",
                "outcome", "reason", "started_at", "answered_at", "accepted_at", "ended_at", "billed_seconds",
                "amount", "recorded", "privileged", "jid", "updated_ts")
CALL_TYPES = {"billed_seconds": "int", "amount": "bigint", "recorded": "boolean", "privileged": "boolean",
              "updated_ts": "bigint"}
CALLS = Upsert("call_records", tuple((c, CALL_TYPES.get(c, "text")) for c in CALL_COLUMNS), ("call_id",),
               CALL_COLUMNS[1:], "jid")
BLOCKS = Upsert("number_blocks", (("facility_id", "text"), ("number_e164", "text"), ("blocked", "boolean"),
                                  ("source", "text"), ("jid", "text"), ("updated_ts", "bigint")),
                ("facility_id", "number_e164"), ("blocked", "source", "jid", "updated_ts"), "jid")


def apply_entries(conn: Connection, entries: Iterable[j.Entry], *, keep_journal: bool = True) -> None:
    """Write a batch of journal entries; safe to call again with any of them, in any order.

    keep_journal=False skips the ledger_journal audit copy (history and the restoring of idempotency
    records by rebuild need it; balances, transfers, holds, calls and blocks do not)."""
    journal_rows: list[tuple[Any, ...]] = []
    transfer_rows: list[tuple[Any, ...]] = []
    latest_account: dict[str, j.Entry] = {}
    latest_hold: dict[tuple[str, str], j.Entry] = {}
    hold_opened: dict[tuple[str, str], j.Entry] = {}
    latest_call: dict[str, tuple[str, int, str]] = {}
    latest_block: dict[tuple[str, str], tuple[str, int, str, str]] = {}

    for e in entries:
        journal_rows.append((e.partition, e.stream_id, e.scope, e.op, e.ts, e.raw))
        op = e.op
        if op in j.ACCOUNT_OPS:
            prev = latest_account.get(e.scope)
            if prev is None or e.ver > prev.ver:
                latest_account[e.scope] = e
            if e.hold_id:
                key = (e.scope, e.hold_id)
                prev = latest_hold.get(key)
                if prev is None or e.ver > prev.ver:
                    latest_hold[key] = e
                if op == "hold":
                    hold_opened[key] = e
            if op in j.POSTING_OPS and e.dp != 0:
                transfer_rows.append((e.scope, e.op_id, op, e.dp, e.posted, e.ver, e.hold_id or None, e.text1,
                                      e.text2 if op == "deposit" else "", e.ts))
        elif op == "call":
            jid = j.sortable_id(e.stream_id)
            call_id = e.fields[0]
            if call_id not in latest_call or jid > latest_call[call_id][0]:
                latest_call[call_id] = (jid, e.ts, e.fields[1])
        elif op == "block":
            jid = j.sortable_id(e.stream_id)
            fac, num, flag, source = e.fields[:4]
            if (fac, num) not in latest_block or jid > latest_block[(fac, num)][0]:
                latest_block[(fac, num)] = (jid, e.ts, flag, source)

    if keep_journal:
        JOURNAL.run(conn, journal_rows)
    TRANSFERS.run(conn, transfer_rows)
    ACCOUNTS.run(conn, [(e.scope, e.facility_id, e.number_e164, e.owner, e.state, e.posted, e.held, e.ver,
                         e.ts) for e in latest_account.values()])
    hold_rows = []
    for key, e in latest_hold.items():
        amount, captured, status, expires, review = e.hold  # type: ignore[misc]
        opened = hold_opened.get(key)
        hold_rows.append((e.scope, e.hold_id, amount, captured, status, expires, review,
                          opened.text2 if opened else "", e.ver, opened.ts if opened else e.ts, e.ts))
    HOLDS.run(conn, hold_rows)
    origins = [(e.text2, e.ts, e.scope, e.hold_id) for e in hold_opened.values()]
    if origins and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(HOLD_ORIGIN_PG, tuple(list(col) for col in zip(*origins, strict=True)))
    elif origins:
        conn.exec_driver_sql(HOLD_ORIGIN_SQLITE, origins)
    call_rows = []
    for jid, ts, body in latest_call.values():
        rec = json.loads(body)
        call_rows.append((*(rec[c] for c in CALL_COLUMNS[:-2]), jid, ts))
    CALLS.run(conn, call_rows)
    BLOCKS.run(conn, [(fac, num, flag == "1", source, jid, ts)
                      for (fac, num), (jid, ts, flag, source) in latest_block.items()])
