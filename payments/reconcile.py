"""Finance's reconciliation: gateway outcomes (the payment trail in SQL, stored-card charges) against
ledger deposits (the ledger's SQL mirror, `ledger_transfers`).

Both sides meet on the gateway key: the saga's deposit op id is ``<key>:dep`` and a reversal's
``<key>:undo`` (payments/saga.py, payments/stored_charge.py). Problems:

* ``CHARGE_NO_DEPOSIT``: the gateway approved (authorized/captured) and no deposit was posted
  (e.g. a crash between authorize and deposit; an attempt still ``authorized`` counts once past grace);
* ``DEPOSIT_NO_CHARGE``: a card deposit whose attempt is missing or ended without an approved charge
  (declined, voided, capture refused and not reversed...);
* ``AMOUNT_MISMATCH``: both exist with different amounts;
* ``STUCK``: an attempt left ``authorizing`` or ``unknown`` (a stored charge ``started``) past grace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from ledger.sql.schema import transfers
from payments.sql import attempts, charges

PHONE_SOURCE = "ivr-card"
STORED_SOURCE = "stored-card"
GRACE_SECONDS = 15 * 60
# Trail states in which the gateway approved money that the ledger must hold as a deposit.
APPROVED = frozenset({"authorized", "posted", "captured", "capture_failed"})
STUCK = frozenset({"authorizing", "unknown"})
STORED_APPROVED = frozenset({"charged", "credited", "refund_failed"})


@dataclass(frozen=True)
class Problem:
    kind: str
    key: str
    account: str
    cents: int
    detail: str

    def line(self) -> str:
        money = f"{self.cents / 100:.2f}"
        return f"{self.kind:<18} {self.key}  account={self.account}  amount={money}  {self.detail}"


@dataclass
class Report:
    checked_attempts: int = 0
    checked_stored: int = 0
    checked_deposits: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"checked_attempts": self.checked_attempts, "checked_stored": self.checked_stored,
                "checked_deposits": self.checked_deposits, "ok": not self.problems,
                "problems": [asdict(p) for p in self.problems]}


def reconcile(engine: Engine, now: float, *, since: float = 0.0, grace: float = GRACE_SECONDS) -> Report:
    """Compare attempts and stored charges updated at/after ``since`` (epoch s) with card deposits posted
    at/after ``since``; an attempt's deposit is looked up whatever its time."""
    rep = Report()
    old = now - grace
    with engine.connect() as conn:
        ledger: dict[str, tuple[str, int, str, float]] = {}     # op id -> (account, amount, note, ts s)
        for r in conn.execute(select(transfers.c.op_id, transfers.c.account_id, transfers.c.amount,
                                     transfers.c.note, transfers.c.ts, transfers.c.kind).where(
                transfers.c.op_id.like("%:dep") | transfers.c.op_id.like("%:undo"))):
            note = r.note if r.kind == "deposit" else ""
            ledger[r.op_id] = (r.account_id, int(r.amount), note, r.ts / 1000)
        phone = {r["attempt_key"]: r for r in conn.execute(select(attempts)).mappings()}
        stored = {r["key"]: r for r in conn.execute(select(charges)).mappings()}
    out = rep.problems

    def deposit_of(key: str) -> tuple[str, int, str, float] | None:
        dep = ledger.get(f"{key}:dep")
        return dep if dep is not None and dep[2] else None

    for key, a in phone.items():
        if a["updated_at"] < since:
            continue
        rep.checked_attempts += 1
        state, cents, acct = a["state"], int(a["amount_cents"]), a["account_id"]
        dep, undone = deposit_of(key), f"{key}:undo" in ledger
        what = f"state={state} gateway={a['gateway']} auth={a['auth_id'] or '-'} last4={a['last4'] or '-'}"
        if state in STUCK and a["updated_at"] < old:
            out.append(Problem("STUCK", key, acct, cents, f"{what} since {a['updated_at']:.0f}"))
        elif state in APPROVED and dep is None and (state != "authorized" or a["updated_at"] < old):
            out.append(Problem("CHARGE_NO_DEPOSIT", key, acct, cents, what))
        elif dep is not None and dep[1] != cents:
            out.append(Problem("AMOUNT_MISMATCH", key, acct, cents, f"{what} deposit={dep[1] / 100:.2f}"))
        elif dep is not None and state not in APPROVED | STUCK and not undone:
            out.append(Problem("DEPOSIT_NO_CHARGE", key, acct, cents, what))
    for key, c in stored.items():
        if c["updated_at"] < since:
            continue
        rep.checked_stored += 1
        state, cents, acct = c["state"], int(c["amount_cents"]), c["account_id"]
        dep = deposit_of(key)
        what = f"stored-card state={state} charge={c['charge_id'] or '-'}"
        if state == "started" and c["updated_at"] < old:
            out.append(Problem("STUCK", key, acct, cents, what))
        elif state in STORED_APPROVED and dep is None and (state != "charged" or c["updated_at"] < old):
            out.append(Problem("CHARGE_NO_DEPOSIT", key, acct, cents, what))
        elif dep is not None and dep[1] != cents:
            out.append(Problem("AMOUNT_MISMATCH", key, acct, cents, f"{what} deposit={dep[1] / 100:.2f}"))
        elif dep is not None and state not in STORED_APPROVED | {"started"} and f"{key}:undo" not in ledger:
            out.append(Problem("DEPOSIT_NO_CHARGE", key, acct, cents, what))
    for op_id, (acct, cents, note, ts) in ledger.items():
        if not op_id.endswith(":dep") or note not in (PHONE_SOURCE, STORED_SOURCE) or ts < since:
            continue
        rep.checked_deposits += 1
        key = op_id[:-len(":dep")]
        if key not in phone and key not in stored:
            out.append(Problem("DEPOSIT_NO_CHARGE", key, acct, cents, f"source={note}: no payment attempt"))
    out.sort(key=lambda p: (p.kind, p.key))
    return rep
