"""Decoding journal entries. Each stream entry has one field "e": values joined by \\x1f in a fixed order.

    common   op, scope, op_id, ts(ms), fingerprint, result
    account  + facility, number, owner, state, posted, held, version, posted delta, held delta,
               hold_id, hold amount, hold captured, hold status, hold expires, hold review,
               amount, text1, text2          (hold fields empty when no hold is involved)
    call     + call_id, record json
    block    + facility, number, blocked(0/1), source[, inmate]   (no inmate: the whole facility)

text1/text2 by operation: deposit source/reference; hold ""/meta json; refund, adjust, freeze, close,
void, expire reason/"".
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "\x1f"
ACCOUNT_OPS = frozenset({"open", "deposit", "hold", "capture", "settle", "void", "expire", "refund", "adjust",
                         "freeze", "unfreeze", "close"})
POSTING_OPS = frozenset({"deposit", "capture", "settle", "refund", "adjust"})

# Positions in raw.split(SEP), for readers that skip building an Entry (the sync worker's hot loop).
OP, SCOPE, OP_ID, TS = 0, 1, 2, 3
(FACILITY, NUMBER, OWNER, STATE, POSTED, HELD, VER, DP, DH, HOLD_ID, HOLD_AMOUNT, HOLD_CAPTURED, HOLD_STATUS,
 HOLD_EXPIRES, HOLD_REVIEW, AMOUNT, TEXT1, TEXT2) = range(6, 24)
CALL_ID, CALL_RECORD = 6, 7
BLOCK_FACILITY, BLOCK_NUMBER, BLOCK_FLAG, BLOCK_SOURCE, BLOCK_INMATE = 6, 7, 8, 9, 10


@dataclass(frozen=True, slots=True)
class Entry:
    partition: int
    stream_id: str
    op: str
    scope: str
    op_id: str
    ts: int
    fp: str
    res: str
    fields: tuple[str, ...]    # the kind-specific values that follow the common ones
    raw: str

    # account operations
    @property
    def account_id(self) -> str:
        return self.scope

    @property
    def facility_id(self) -> str:
        return self.fields[0]

    @property
    def number_e164(self) -> str:
        return self.fields[1]

    @property
    def owner(self) -> str:
        return self.fields[2]

    @property
    def state(self) -> str:
        return self.fields[3]

    @property
    def posted(self) -> int:
        return int(self.fields[4])

    @property
    def held(self) -> int:
        return int(self.fields[5])

    @property
    def ver(self) -> int:
        return int(self.fields[6])

    @property
    def dp(self) -> int:
        return int(self.fields[7])

    @property
    def dh(self) -> int:
        return int(self.fields[8])

    @property
    def hold_id(self) -> str:
        return self.fields[9]

    @property
    def hold(self) -> tuple[int, int, str, float, bool] | None:
        """(amount, captured, status, expires_at, review) after the operation, if a hold is involved."""
        if not self.fields[9]:
            return None
        f = self.fields
        return int(f[10]), int(f[11]), f[12], float(f[13]), f[14] == "1"

    @property
    def amount(self) -> int:
        return int(self.fields[15])

    @property
    def text1(self) -> str:
        return self.fields[16]

    @property
    def text2(self) -> str:
        return self.fields[17]


def decode(partition: int, stream_id: str, raw: str) -> Entry:
    parts = raw.split(SEP)
    op, scope, op_id, ts, fp, res = parts[:6]
    return Entry(partition, stream_id, op, scope, op_id, int(ts), fp, res, tuple(parts[6:]), raw)


def sortable_id(stream_id: str) -> str:
    """Stream ids ("ms-seq") as fixed-width text, so SQL compares them in journal order."""
    ms, _, seq = stream_id.partition("-")
    return f"{int(ms):015d}-{int(seq or 0):010d}"
