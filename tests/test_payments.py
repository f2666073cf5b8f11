"""Card checks, the sandbox gateway's rules, deposit limits and the charge step (on a real redis-server)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.deposit.entry import (
    DepositLimits,
    idempotency_key,
    parse_amount,
    parse_number,
    spoken_number,
)
from ledger import Ledger
from payments.cards import card_number_ok, cvv_ok, expiry_problem, luhn_ok
from payments.gateway import GatewayError, IdempotencyConflict, PaymentError
from payments.saga import DepositOrder, charge
from payments.sandbox import SandboxGateway

NOV_2026 = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
VISA, MC, AMEX = "4111111111111111", "5555555555554444", "378282246310005"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# --- card-entry checks ------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.integers(0, 9))
def test_exactly_one_check_digit_makes_a_card_number_valid(body: str, wrong: int) -> None:
    good = with_check_digit(body)
    assert card_number_ok(good)
    bad = body + str((int(good[-1]) + 1 + wrong % 9) % 10)
    assert not card_number_ok(bad)


@pytest.mark.parametrize("entry", ["", None, "4111", "41111111111111111111", "4111-1111-1111-1111",
                                   "411111111111111*", "４１１１１１１１１１１１１１１１"])
def test_malformed_card_numbers(entry: Any) -> None:
    assert not card_number_ok(entry)


@pytest.mark.parametrize(("mmyy", "problem"), [
    ("1126", None),            # the current month is still valid
    ("1026", "expired"), ("1225", "expired"), ("0127", None), ("1246", None),
    ("1247", "malformed"),     # more than 20 years ahead
    ("0027", "malformed"), ("1327", "malformed"), ("127", "malformed"), ("12/7", "malformed"),
    ("", "malformed"), (None, "malformed"),
])
def test_expiry(mmyy: Any, problem: str | None) -> None:
    assert expiry_problem(mmyy, NOV_2026) == problem


def test_cvv_length_depends_on_the_brand() -> None:
    assert cvv_ok("123", VISA) and not cvv_ok("1234", VISA)
    assert cvv_ok("1234", AMEX) and not cvv_ok("123", AMEX)
    assert not cvv_ok("12a", VISA) and not cvv_ok(None, VISA) and not cvv_ok("", MC)


# --- sandbox gateway --------------------------------------------------------------------------------------

def sandbox() -> SandboxGateway:
    return SandboxGateway(now=lambda: NOV_2026.timestamp())


def test_sandbox_rules() -> None:
    async def go() -> None:
        gw = sandbox()
        ok = await gw.authorize("k1", VISA, "1230", "123", 2500)
        assert ok.approved and ok.auth_id and ok.last4 == "1111" and ok.amount_cents == 2500
        assert (await gw.authorize("k2", AMEX, "1230", "1234", 100)).approved
        cases = {
            "k3": ("4000000000000002", "1230", "123", "card_declined"),
            "k4": ("4000000000009995", "1230", "123", "insufficient_funds"),
            "k5": (with_check_digit("411111111111111"[:-1] + "2"), "1230", "123", "unknown_test_card"),
            "k6": ("4111111111111112", "1230", "123", "invalid_number"),
            "k7": (VISA, "1026", "123", "expired_card"),
            "k8": (VISA, "1230", "12", "incorrect_cvc"),
        }
        for key, (card, exp, cvv, reason) in cases.items():
            res = await gw.authorize(key, card, exp, cvv, 1000)
            assert not res.approved and res.decline_reason == reason and res.auth_id == "", key
        with pytest.raises(GatewayError):
            await gw.authorize("k9", VISA, "1230", "123", 1013)              # amount ending in .13
        with pytest.raises(GatewayError):
            await gw.authorize("k10", "4000000000000119", "1230", "123", 1000)
        for amount in (0, -5, 10.0, True):
            with pytest.raises(PaymentError):
                await gw.authorize("k11", VISA, "1230", "123", amount)  # type: ignore[arg-type]
        assert len(gw.auths) == 2
    run(go())


def test_sandbox_is_idempotent_by_key() -> None:
    async def go() -> None:
        gw = sandbox()
        first = await gw.authorize("key", VISA, "1230", "123", 2500)
        again = await gw.authorize("key", VISA, "1230", "123", 2500)
        assert again == first and gw.processed == 1 and len(gw.auths) == 1
        for changed in ((MC, "1230", "123", 2500), (VISA, "1230", "123", 2600), (VISA, "1230", "124", 2500)):
            with pytest.raises(IdempotencyConflict):
                await gw.authorize("key", *changed)
        declined = await gw.authorize("d", "4000000000000002", "1230", "123", 100)
        assert await gw.authorize("d", "4000000000000002", "1230", "123", 100) == declined
        assert gw.processed == 2
    run(go())


def test_sandbox_capture_and_void() -> None:
    async def go() -> None:
        gw = sandbox()
        a = await gw.authorize("a", VISA, "1230", "123", 2500)
        await gw.capture(a.auth_id, 2500)
        await gw.capture(a.auth_id, 2500)                     # idempotent
        assert gw.charged_cents() == 2500
        with pytest.raises(IdempotencyConflict):
            await gw.capture(a.auth_id, 2000)
        await gw.void(a.auth_id)                              # after capture: a refund
        assert gw.auths[a.auth_id].state == "refunded" and gw.charged_cents() == 0
        b = await gw.authorize("b", VISA, "1230", "123", 500)
        with pytest.raises(PaymentError):
            await gw.capture(b.auth_id, 501)
        assert gw.outstanding() == [gw.auths[b.auth_id]]
        await gw.void(b.auth_id)
        await gw.void(b.auth_id)
        with pytest.raises(PaymentError):
            await gw.capture(b.auth_id, 500)
        with pytest.raises(PaymentError):
            await gw.void("nope")
        assert gw.outstanding() == [] and gw.charged_cents() == 0
    run(go())


def test_sandbox_keeps_no_card_data() -> None:
    async def go() -> None:
        gw = sandbox()
        await gw.authorize("a", VISA, "1230", "739", 2500)
        state = repr({k: v for k, v in vars(gw).items() if k != "_secret"}) + repr(list(gw.auths.values()))
        # Random hex (HMACs, authorization ids) may hold "739" or "1230" by chance: drop runs with a letter.
        state = re.sub(r"[0-9a-f]{16,}", lambda m: m[0] if m[0].isdigit() else "", state)
        assert VISA not in state and "739" not in state and "1230" not in state
    run(go())


# --- limits and entries -----------------------------------------------------------------------------------

def test_limits() -> None:
    assert DepositLimits().min_cents == 100 and DepositLimits().max_cents == 30_000
    assert DepositLimits(max_cents=5_000).max_cents == 5_000
    with pytest.raises(ValueError, match=r"\$50"):
        DepositLimits(max_cents=4_999)
    with pytest.raises(ValueError, match="minimum"):
        DepositLimits(min_cents=500)            # no minimum above $1 may be imposed
    with pytest.raises(ValueError):
        DepositLimits(tries=0)

    class S:
        max_amount = 20_000
        deposit_max_cents = 25_000
    with pytest.raises(ValueError, match="ceiling"):
        DepositLimits.from_settings(S())
    S.deposit_max_cents = 10_000
    assert DepositLimits.from_settings(S()).max_cents == 10_000


@pytest.mark.parametrize(("entry", "expected"), [
    ("1", (100, "")), ("300", (30_000, "")), ("050", (5_000, "")),
    ("0", (None, "out_of_range")), ("301", (None, "out_of_range")), ("99999", (None, "out_of_range")),
    ("", (None, "malformed")), (None, (None, "malformed")), ("1*", (None, "malformed")),
    ("²", (None, "malformed")),
])
def test_parse_amount(entry: str | None, expected: tuple[int | None, str]) -> None:
    assert parse_amount(entry, DepositLimits()) == expected


@pytest.mark.parametrize(("entry", "expected"), [
    ("3125551234", ("+13125551234", "")), ("13125551234", ("+13125551234", "")),
    ("011525512345678", ("+525512345678", "")),
    ("12", (None, "short_code")), ("8005551234", (None, "toll_free")), ("", (None, "invalid")),
    (None, (None, "invalid")), ("31255512*4", (None, "invalid")), ("0000000000", (None, "invalid")),
])
def test_parse_number(entry: str | None, expected: tuple[str | None, str]) -> None:
    assert parse_number(entry) == expected


def test_spoken_number_and_key() -> None:
    assert spoken_number("+13125551234") == "3125551234"
    assert spoken_number("+525512345678") == "525512345678"
    key = idempotency_key("1795536000.42", "ap_0123")
    assert key == "dep-1795536000.42-ap_0123" == idempotency_key("1795536000.42", "ap_0123")
    assert idempotency_key("a b/c", "ap_1") == "dep-abc-ap_1"
    assert idempotency_key("", "ap_1") != idempotency_key("", "ap_1")       # no channel id: random


# --- the charge step on a real redis-server ---------------------------------------------------------------

class FailingCapture(SandboxGateway):
    async def capture(self, auth_id: str, amount_cents: int) -> None:
        raise GatewayError("capture down")


def test_charge_posts_once_per_key_and_voids_when_the_ledger_refuses(redis_url: str) -> None:
    async def go() -> None:
        ledger = await Ledger.connect(redis_url)
        try:
            gw = sandbox()
            acc = await ledger.open_account("o1", "FAC-07", "+13125551234")
            order = DepositOrder("dep-x-1", "FAC-07", "+13125551234", acc, 2500)
            states: list[str] = []

            async def note(state: str, fields: dict[str, str]) -> None:
                states.append(state)
                assert VISA not in repr(fields) and "123" not in fields.values()

            first = await charge(ledger, gw, order, VISA, "1230", "123", on_state=note)
            second = await charge(ledger, gw, order, VISA, "1230", "123")
            assert first.status == second.status == "posted" and first.ref == second.ref
            assert first.available == 2500 and second.available == 2500
            assert (await ledger.balance(acc)).posted == 2500 and gw.charged_cents() == 2500
            assert states == ["authorized", "posted", "captured"]
            # A new account is opened by the first deposit (op ids derive from the key).
            from ledger.keys import account_id_for
            new = account_id_for("FAC-07", "+13125557000")
            opened = await charge(ledger, gw, DepositOrder("dep-x-2", "FAC-07", "+13125557000", new, 100,
                                                           open_first=True), MC, "1230", "123")
            assert opened.status == "posted" and (await ledger.balance(new)).state == "active"
            # Frozen account: the ledger refuses the credit, the authorization is voided.
            await ledger.freeze("f1", acc, reason="test")
            refused = await charge(ledger, gw, DepositOrder("dep-x-3", "FAC-07", "+13125551234", acc, 700),
                                   VISA, "1230", "123", backoff=0)
            assert refused.status == "failed" and refused.voided and refused.reason.startswith("ledger_")
            assert gw.auths[refused.ref].state == "voided" and gw.charged_cents() == 2600
            # A declined card and a gateway error post nothing.
            declined = await charge(ledger, gw, DepositOrder("dep-x-4", "FAC-07", "+13125557000", new, 100),
                                    "4000000000000002", "1230", "123")
            failed = await charge(ledger, gw, DepositOrder("dep-x-5", "FAC-07", "+13125557000", new, 1013),
                                  VISA, "1230", "123", backoff=0)
            assert (declined.status, failed.status, failed.reason) == ("declined", "failed", "gateway_error")
            assert (await ledger.balance(new)).posted == 100
            # Capture failing after the credit: the family keeps the credit (never charged uncredited).
            cap = FailingCapture(now=lambda: NOV_2026.timestamp())
            kept = await charge(ledger, cap, DepositOrder("dep-x-6", "FAC-07", "+13125557000", new, 200),
                                VISA, "1230", "123", backoff=0)
            assert kept.status == "posted" and (await ledger.balance(new)).posted == 300
            assert cap.charged_cents() == 0 and len(cap.outstanding()) == 1
        finally:
            await ledger.close()
    run(go())



class LedgerReplies:
    """The real ledger, but the deposit's replies are lost: ``lost`` of them after the script ran
    (outcome unknown), or every attempt fails before reaching Redis (``unsent``)."""

    def __init__(self, inner: Ledger, *, lost: int = 0, unsent: bool = False) -> None:
        self.inner, self.lost, self.unsent, self.calls = inner, lost, unsent, 0

    async def deposit(self, *a: Any, **kw: Any) -> Any:
        from ledger.errors import LedgerUnavailable

        self.calls += 1
        if self.unsent:
            raise LedgerUnavailable("cannot connect to Redis at 127.0.0.1:1: refused", not_applied=True)
        balance = await self.inner.deposit(*a, **kw)
        if self.calls <= self.lost:
            raise LedgerUnavailable("connection to Redis lost (reset); outcome unknown, retry")
        return balance

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_charge_never_voids_a_credit_whose_outcome_is_unknown(redis_url: str) -> None:
    async def go() -> None:
        ledger = await Ledger.connect(redis_url)
        try:
            acc = await ledger.open_account("o1", "FAC-07", "+13125551234")
            states: list[str] = []

            async def note(state: str, fields: dict[str, str]) -> None:
                states.append(state)

            # Every reply lost though the script ran: keep retrying the same op id, then keep the
            # authorization (not voided, not captured) and say "unknown" for reconciliation.
            gw = sandbox()
            lost = LedgerReplies(ledger, lost=10**6)
            out = await charge(lost, gw, DepositOrder("dep-u-1", "FAC-07", "+13125551234", acc, 2500),
                               VISA, "1230", "123", backoff=0.01, settle=0.3, on_state=note)
            assert (out.status, out.reason, out.voided) == ("unknown", "ledger_unknown", False)
            assert lost.calls > 3                                # kept asking for the bounded time
            assert (await ledger.balance(acc)).posted == 2500    # posted once, whatever the retries
            assert [a.state for a in gw.auths.values()] == ["authorized"] and gw.charged_cents() == 0
            assert states == ["authorized", "unknown"]
            # The first two replies lost: the retry with the same op id learns the credit, then captures.
            gw2 = sandbox()
            flaky = LedgerReplies(ledger, lost=2)
            ok = await charge(flaky, gw2, DepositOrder("dep-u-2", "FAC-07", "+13125551234", acc, 100),
                              VISA, "1230", "123", backoff=0.01, settle=5)
            assert ok.status == "posted" and ok.available == 2600 and gw2.charged_cents() == 100
            # Never reached Redis: certainly not posted, so the authorization is voided.
            gw3 = sandbox()
            down = LedgerReplies(ledger, unsent=True)
            voided = await charge(down, gw3, DepositOrder("dep-u-3", "FAC-07", "+13125551234", acc, 700),
                                  VISA, "1230", "123", backoff=0, settle=5)
            assert voided.status == "failed" and voided.voided and down.calls == 3
            assert gw3.auths[voided.ref].state == "voided"
            # The same unreachable Redis on a replay of a run that may have posted: still unknown.
            again = await charge(down, gw, DepositOrder("dep-u-1", "FAC-07", "+13125551234", acc, 2500),
                                 VISA, "1230", "123", backoff=0, settle=0.1, replay=True)
            assert again.status == "unknown" and gw.outstanding() != []
            assert (await ledger.balance(acc)).posted == 2600
        finally:
            await ledger.close()
    run(go())


def test_a_capture_refused_after_the_credit_takes_the_credit_back(redis_url: str) -> None:
    async def go() -> None:
        ledger = await Ledger.connect(redis_url)
        try:
            acc = await ledger.open_account("o1", "FAC-07", "+13125551234")
            await ledger.deposit("seed", acc, 500)
            gw = sandbox()
            order = DepositOrder("dep-v-1", "FAC-07", "+13125551234", acc, 2500)
            down = LedgerReplies(ledger, unsent=True)
            first = await charge(down, gw, order, VISA, "1230", "123", backoff=0)
            assert first.voided and gw.auths[first.ref].state == "voided"
            # The same key again (an AGI re-run): the gateway replays the voided authorization, the
            # ledger posts, the capture is refused -> the credit is undone and it is not a success.
            states: list[str] = []

            async def note(state: str, fields: dict[str, str]) -> None:
                states.append(state)

            second = await charge(ledger, gw, order, VISA, "1230", "123", backoff=0, on_state=note)
            assert (second.status, second.reason) == ("failed", "capture_refused")
            assert gw.charged_cents() == 0
            assert (await ledger.balance(acc)).posted == 500
            assert states == ["authorized", "posted", "reversed"]
        finally:
            await ledger.close()
    run(go())


def test_sandbox_void_by_key() -> None:
    async def go() -> None:
        gw = sandbox()
        auth = await gw.authorize("k1", VISA, "1230", "123", 2500)
        await gw.void_by_key("k1")
        await gw.void_by_key("k1")                          # idempotent
        assert gw.auths[auth.auth_id].state == "voided"
        declined = await gw.authorize("k2", "4000000000000002", "1230", "123", 100)
        await gw.void_by_key("k2")                          # nothing held under a decline
        assert not declined.approved
        await gw.void_by_key("k3")                          # nothing yet: a late request is refused
        with pytest.raises(PaymentError):
            await gw.authorize("k3", VISA, "1230", "123", 100)
        assert gw.outstanding() == [] and gw.processed == 2
    run(go())


def test_a_card_is_good_through_the_end_of_its_month_in_every_us_time_zone() -> None:
    # 2026-12-01 01:00 UTC is still November 30 from New York to Hawaii and American Samoa.
    assert expiry_problem("1126", datetime(2026, 12, 1, 1, 0, tzinfo=UTC)) is None
    assert expiry_problem("1126", datetime(2026, 12, 1, 11, 59, tzinfo=UTC)) is None
    assert expiry_problem("1126", datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) == "expired"   # over everywhere
    assert expiry_problem("1026", datetime(2026, 12, 1, 1, 0, tzinfo=UTC)) == "expired"
    assert expiry_problem("1226", datetime(2027, 1, 1, 5, 0, tzinfo=UTC)) is None           # across a year

    async def go() -> None:      # the sandbox processor agrees
        gw = SandboxGateway(now=lambda: datetime(2026, 12, 1, 1, 0, tzinfo=UTC).timestamp())
        assert (await gw.authorize("k", VISA, "1126", "123", 100)).approved
    run(go())
