"""callcontrol.billing: the op ids that exactly-once rests on, pinned byte for byte (Redis already holds
records keyed by them), and errors told apart by class."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import redis.exceptions

from callcontrol import billing
from ledger import errors as le
from rating.errors import NumberRefused, TariffError

REPO = Path(__file__).resolve().parent.parent


def test_op_ids_are_pinned() -> None:
    c = "c18f3a2b4c5d0a1b2c3d4e"
    assert billing.op_hold(c) == c + ":hold"
    assert billing.op_capture(c, 1) == c + ":cap:1"
    assert billing.op_capture(c, 12) == c + ":cap:12"
    assert billing.op_settle(c) == c + ":settle"
    assert billing.op_settle_again(c) == c + ":settle2"
    assert billing.op_void(c) == c + ":void"
    assert billing.op_void_unused(c) == c + ":void-unused"
    assert billing.op_record(c) == c + ":record"
    assert billing.op_block(c) == c + ":block"
    assert billing.account_for("FAC-07", "+13125550100") == "ap_baf765376eb0761bdedb"


def test_nobody_else_formats_a_call_op_id() -> None:
    suffix = re.compile(r"""f["'][^"']*\}:(hold|cap:|settle|void|record|block)""")
    found = [f"{p.relative_to(REPO)}:{n}" for p in sorted((REPO / "callcontrol").rglob("*.py"))
             if p.name != "billing.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if suffix.search(line)]
    assert found == []


@pytest.mark.parametrize("cls", sorted(set(le.ERRORS_BY_CODE.values()), key=lambda c: c.__name__))
def test_only_an_unreachable_ledger_is_transient(cls: type[le.LedgerError]) -> None:
    exc = cls("x")
    assert billing.transient(exc) is (cls is le.LedgerUnavailable)
    assert billing.service_failure(exc) is (cls not in (le.BadInput, le.BadId))


def test_errors_by_class() -> None:
    assert billing.transient(redis.exceptions.ConnectionError()) and billing.transient(ConnectionResetError())
    assert billing.transient(redis.exceptions.TimeoutError()) and billing.transient(TimeoutError())
    assert not billing.transient(redis.exceptions.ResponseError()) and not billing.transient(KeyError())
    assert billing.service_failure(redis.exceptions.ResponseError())
    assert billing.service_failure(TariffError("f", "x", "y")) and billing.service_failure(
        NumberRefused("invalid", "x"))
    assert not billing.service_failure(KeyError()) and not billing.service_failure(ValueError())
    assert billing.maybe_applied(le.LedgerUnavailable("x"))
    assert not billing.maybe_applied(le.LedgerUnavailable("x", not_applied=True))
    assert not billing.maybe_applied(le.InsufficientFunds("x"))


def test_retry_replays_only_while_the_ledger_is_unreachable() -> None:
    calls: list[int] = []

    async def flaky(failures: int, exc: Exception) -> int:
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return len(calls)

    assert asyncio.run(billing.retry(lambda: flaky(2, le.LedgerUnavailable("down")))) == 3
    calls.clear()
    with pytest.raises(le.LedgerUnavailable):
        asyncio.run(billing.retry(lambda: flaky(3, le.LedgerUnavailable("down"))))
    assert len(calls) == billing.RETRIES
    calls.clear()
    with pytest.raises(le.HoldNotPending):
        asyncio.run(billing.retry(lambda: flaky(1, le.HoldNotPending("done"))))
    assert len(calls) == 1
