"""The Authorize.Net adapter against a local Authorize.Net on loopback (tests/support/authorizenet.py):
the requests it sends, the answers it understands, and what it does when the answer never comes."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from payments.authorizenet import AuthorizeNetGateway, ref_for
from payments.gateway import (
    Declined,
    DuplicateTransaction,
    GatewayError,
    InvalidCard,
    PaymentError,
)
from tests.support.authorizenet import FakeAuthorizeNet

VISA, DECLINE, BAD = "4111111111111111", "4000000000000002", "4111111111111112"
SECRET = "tx-key-secret"


@pytest.fixture
def fake() -> Iterator[FakeAuthorizeNet]:
    server = FakeAuthorizeNet(key=SECRET)
    yield server
    server.close()


def run(fake: FakeAuthorizeNet, body: Any, timeout: float = 0.5, key: str = SECRET) -> Any:
    async def go() -> Any:
        gw = AuthorizeNetGateway("login-id", key, url=fake.url, timeout=timeout)
        try:
            return await body(gw)
        finally:
            await gw.aclose()
    return asyncio.run(go())


def tx(fake: FakeAuthorizeNet, i: int) -> dict[str, Any]:
    req: dict[str, Any] = fake.request(i)["createTransactionRequest"]
    return req


def test_stored_card_charge_refund_and_the_requests_sent(fake: FakeAuthorizeNet) -> None:
    async def body(gw: AuthorizeNetGateway) -> None:
        tok = await gw.tokenize("add-1", VISA, "1230", "123")
        sent = fake.request(0)["createCustomerProfileRequest"]
        assert sent["merchantAuthentication"] == {"name": "login-id", "transactionKey": SECRET}
        assert sent["profile"]["merchantCustomerId"] == ref_for("add-1") and len(ref_for("add-1")) == 20
        assert sent["profile"]["paymentProfiles"]["payment"]["creditCard"] == {
            "cardNumber": VISA, "expirationDate": "2030-12", "cardCode": "123"}
        assert sent["validationMode"] == "liveMode"
        assert (tok.brand, tok.last4, tok.exp_month, tok.exp_year) == ("visa", "1111", 12, 2030)
        assert await gw.tokenize("add-1", VISA, "1230", "123") == tok     # E00039 -> the same profile
        charge = await gw.charge_token("reload-1", tok.token, 2500)
        req = tx(fake, len(fake.requests) - 1)
        assert req["refId"] == ref_for("reload-1")
        t = req["transactionRequest"]
        assert (t["transactionType"], t["amount"], t["order"]["invoiceNumber"]) == (
            "authCaptureTransaction", "25.00", ref_for("reload-1"))
        customer, _, payment = tok.token.partition("/")
        assert t["profile"] == {"customerProfileId": customer,
                                "paymentProfile": {"paymentProfileId": payment}}
        assert t["transactionSettings"]["setting"] == [{"settingName": "duplicateWindow",
                                                        "settingValue": "28800"}]
        assert '"amount": "25.00"' in fake.requests[-1]                 # a decimal string, never a float
        # The same key again: the processor answers "duplicate" and the adapter returns the original.
        assert await gw.charge_token("reload-1", tok.token, 2500) == charge
        assert len([x for x in fake.txns if x["type"] == "authCaptureTransaction"]) == 1
        found = await gw.lookup("reload-1")
        assert found is not None and (found.txn_id, found.status, found.amount_cents) == (
            charge.charge_id, "approved", 2500)
        assert await gw.lookup("never-used") is None
        # Not settled yet: a full refund is a void, a partial one is refused.
        with pytest.raises(PaymentError):
            await gw.refund("r-0", charge.charge_id, 100)
        fake.settle_all()
        r1 = await gw.refund("r-1", charge.charge_id, 1000)
        t = tx(fake, len(fake.requests) - 1)["transactionRequest"]
        assert (t["transactionType"], t["amount"], t["refTransId"]) == ("refundTransaction", "10.00",
                                                                        charge.charge_id)
        assert t["payment"]["creditCard"] == {"cardNumber": "1111", "expirationDate": "XXXX"}
        assert await gw.refund("r-1", charge.charge_id, 1000) == r1      # duplicate -> the same refund
        await gw.refund("r-2", charge.charge_id, 1500)
        with pytest.raises(PaymentError):                                # more than was charged
            await gw.refund("r-3", charge.charge_id, 1)
        other = await gw.charge_token("reload-2", tok.token, 700)
        await gw.refund("r-4", other.charge_id, 700)
        assert [x["transactionStatus"] for x in fake.txns if x["transId"] == other.charge_id] == ["voided"]
    run(fake, body)


def test_declines_invalid_cards_and_processor_errors(fake: FakeAuthorizeNet) -> None:
    async def body(gw: AuthorizeNetGateway) -> None:
        with pytest.raises(InvalidCard):
            await gw.tokenize("bad", BAD, "1230", "123")                   # refused before any request
        assert fake.requests == []
        declining = await gw.tokenize("add-d", DECLINE, "1230", "123")
        with pytest.raises(Declined) as no:
            await gw.charge_token("c-d", declining.token, 500)
        assert no.value.reason == "card_declined" and not isinstance(no.value, InvalidCard)
        auth = await gw.authorize("dep-1", BAD, "1230", "123", 500)
        assert (auth.approved, auth.decline_reason) == (False, "invalid_number")
        auth = await gw.authorize("dep-2", DECLINE, "1230", "123", 500)
        assert (auth.approved, auth.decline_reason) == (False, "card_declined")
        found = await gw.lookup("dep-2")
        assert found is not None and found.status == "declined"
    run(fake, body)


def test_deposit_line_calls(fake: FakeAuthorizeNet) -> None:
    async def body(gw: AuthorizeNetGateway) -> None:
        auth = await gw.authorize("dep-1", VISA, "0831", "123", 1234)
        t = tx(fake, 0)["transactionRequest"]
        assert (t["transactionType"], t["amount"], t["payment"]["creditCard"]["expirationDate"]) == (
            "authOnlyTransaction", "12.34", "2031-08")
        assert auth.approved and auth.last4 == "1111"
        assert await gw.authorize("dep-1", VISA, "0831", "123", 1234) == auth   # duplicate -> same
        await gw.capture(auth.auth_id, 1234)
        await gw.capture(auth.auth_id, 1234)                                     # 311: already done
        t = tx(fake, len(fake.requests) - 1)["transactionRequest"]
        assert (t["transactionType"], t["refTransId"]) == ("priorAuthCaptureTransaction", auth.auth_id)
        second = await gw.authorize("dep-2", VISA, "0831", "123", 500)
        await gw.void_by_key("dep-2")
        await gw.void(second.auth_id)                                            # 310: already voided
        assert [x["transactionStatus"] for x in fake.txns] == ["capturedPendingSettlement", "voided"]
    run(fake, body)


@pytest.mark.parametrize("fault", ["timeout", "500", "malformed"])
def test_no_answer_is_an_unknown_outcome_resolved_by_lookup(fake: FakeAuthorizeNet, fault: str) -> None:
    async def body(gw: AuthorizeNetGateway) -> None:
        tok = await gw.tokenize("add-1", VISA, "1230", "123")
        fake.faults.append(fault)
        with pytest.raises(GatewayError):
            await gw.charge_token("reload-1", tok.token, 2500)
        sent = len(fake.requests)
        found = await gw.lookup("reload-1")
        charged = [x for x in fake.txns if x["type"] == "authCaptureTransaction"]
        assert len(fake.requests) == sent + 1                  # no retry: one request per call
        if fault == "timeout":                                  # the processor did charge
            assert found is not None and found.amount_cents == 2500 and len(charged) == 1
            again = await gw.charge_token("reload-1", tok.token, 2500)   # repeat: duplicate, not a 2nd charge
            assert again.charge_id == found.txn_id and len(fake.txns) == 1
        else:
            assert found is None and charged == []
    run(fake, body, timeout=0.3)


def test_duplicate_of_another_keys_transaction_and_bad_credentials(fake: FakeAuthorizeNet) -> None:
    async def body(gw: AuthorizeNetGateway) -> None:
        tok = await gw.tokenize("add-1", VISA, "1230", "123")
        await gw.charge_token("k", tok.token, 100)
        fake.txns[0]["transactionStatus"] = "settledSuccessfully"     # no longer in the unsettled list
        with pytest.raises(DuplicateTransaction):
            await gw.charge_token("k", tok.token, 100)
    run(fake, body)

    async def wrong(gw: AuthorizeNetGateway) -> None:
        with pytest.raises(PaymentError) as refused:
            await gw.authorize("x", VISA, "1230", "123", 100)
        assert "E00007" in str(refused.value) and "wrong-key" not in str(refused.value)
    run(fake, wrong, key="wrong-key")


def test_card_data_and_secrets_reach_no_log_and_no_error(fake: FakeAuthorizeNet,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []

    async def body(gw: AuthorizeNetGateway) -> None:
        assert SECRET not in repr(gw)
        tok = await gw.tokenize("add-1", VISA, "1230", "987")
        for fault in ("timeout", "500", "malformed"):
            fake.faults.append(fault)
            try:
                await gw.authorize(f"dep-{fault}", VISA, "1230", "987", 100)
            except PaymentError as exc:
                errors.append(repr(exc) + str(exc.__cause__) + str(exc.__context__))
        fake.faults.append("timeout")
        try:
            await gw.charge_token("c", tok.token, 100)
        except PaymentError as exc:
            errors.append(repr(exc) + str(exc.__cause__) + str(exc.__context__))

    with structlog.testing.capture_logs() as logs:
        run(fake, body, timeout=0.3)
    text = caplog.text + repr(logs) + "".join(errors)
    assert len(errors) == 4
    for secret in (VISA, "2030-12", SECRET):
        assert secret not in text
    assert not re.search(r"\b987\b", text)          # the CVV (a port number may contain the digits)


def test_settings_select_the_adapter_and_hide_its_secrets() -> None:
    from callcontrol.deposit.line import gateway_from_settings
    from callcontrol.platform.config import load_settings

    settings = load_settings({"CALLCONTROL_PAYMENT_GATEWAY": "authorizenet",
                              "CALLCONTROL_AUTHORIZENET_LOGIN_ID": "login-id",
                              "CALLCONTROL_AUTHORIZENET_TRANSACTION_KEY": SECRET,
                              "CALLCONTROL_AUTHORIZENET_TIMEOUT": "7"})
    assert SECRET not in repr(settings) and "login-id" not in repr(settings)
    gw = gateway_from_settings(settings)
    assert isinstance(gw, AuthorizeNetGateway) and SECRET not in repr(gw)
    asyncio.run(gw.aclose())
