"""Authorize.Net adapter (JSON API, card-not-present): the deposit line's authorize/capture/void and
stored cards through Customer Information Manager profiles.

Why Authorize.Net: it takes keyed card data from a phone order (card-not-present / MOTO), has a
documented JSON API with auth-only, prior-auth capture, sale, void and refund, stores cards as customer
payment profiles, and lets us find a transaction again by our own reference.

Idempotency: every request carries ``refId`` and ``order.invoiceNumber`` = the first 20 hex digits of
SHA-256(key) (both fields hold at most 20 characters), and a ``duplicateWindow`` so that repeating a
request under the same key inside the window is answered "duplicate" (error 11) instead of charging
twice. Nothing is retried here: a timeout, a 5xx or an unreadable reply is ``GatewayError`` (outcome
unknown) and ``lookup(key)`` finds the transaction by its invoice number among the unsettled ones.
Secrets (login id, transaction key) and card data are never logged nor put in an exception.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any

import httpx

from payments.cards import brand, card_number_ok, cvv_ok, expiry_parts
from payments.gateway import (
    Authorization,
    CardToken,
    Charge,
    Declined,
    DuplicateTransaction,
    GatewayError,
    IdempotencyConflict,
    InvalidCard,
    PaymentError,
    Refund,
    Transaction,
)

SANDBOX_URL = "https://apitest.authorize.net/xml/v1/request.api"
PRODUCTION_URL = "https://api.authorize.net/xml/v1/request.api"
DUPLICATE_WINDOW = 28_800            # seconds (the processor's maximum: 8 hours)
INVALID = {"6": "invalid_number", "7": "invalid_expiry", "8": "expired_card", "78": "incorrect_cvc",
           "37": "invalid_number", "17": "card_not_accepted", "28": "card_not_accepted"}
DECLINE = {"2": "card_declined", "3": "card_declined", "4": "card_declined", "27": "avs_mismatch",
           "44": "incorrect_cvc", "45": "incorrect_cvc", "65": "incorrect_cvc"}
RETRYABLE = {"19", "20", "21", "22", "23", "25", "26", "57", "58", "59", "60", "61", "62", "63", "120",
             "121", "122", "181"}   # "an error occurred during processing, try again": outcome unknown
ALREADY = {"310", "311"}            # already voided / already captured: an idempotent repeat
UNSETTLED_CAPTURED = {"capturedPendingSettlement"}
APPROVED = {"authorizedPendingCapture", "capturedPendingSettlement", "settledSuccessfully",
            "refundPendingSettlement", "refundSettledSuccessfully", "approvedReview"}


def ref_for(key: str) -> str:
    """refId and invoiceNumber for an idempotency key (at most 20 characters each)."""
    if not isinstance(key, str) or not key:
        raise PaymentError("an idempotency key is required")
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def dollars(cents: int) -> str:
    """Integer cents as the decimal string the API takes ("12.34")."""
    if type(cents) is not int or cents <= 0:
        raise PaymentError("amount must be a positive integer number of cents")
    return f"{cents // 100}.{cents % 100:02d}"


def cents_of(value: Any) -> int:
    amount = Decimal(str(value)) * 100
    if amount != amount.to_integral_value():
        raise GatewayError("amount with a fraction of a cent in the reply")
    return int(amount)


def _expiration(mmyy: str) -> str:
    month, year = expiry_parts(mmyy)
    return f"{year:04d}-{month:02d}"


class AuthorizeNetGateway:
    """``PaymentGateway`` on Authorize.Net. ``client`` may be shared; timeouts are per request."""

    def __init__(self, login_id: str, transaction_key: str, url: str = SANDBOX_URL, timeout: float = 20.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if not login_id or not transaction_key:
            raise PaymentError("Authorize.Net needs a login id and a transaction key")
        self._auth = {"name": login_id, "transactionKey": transaction_key}
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False)

    def __repr__(self) -> str:
        return f"AuthorizeNetGateway(url={self.url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- transport -------------------------------------------------------------------------------------
    async def _call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one request; the parsed reply. Transport trouble -> GatewayError (outcome unknown)."""
        payload = json.dumps({name: {"merchantAuthentication": self._auth, **body}})
        try:
            resp = await self._client.post(self.url, content=payload,
                                           headers={"Content-Type": "application/json"})
        except httpx.TimeoutException:
            raise GatewayError(f"{name}: no reply in time") from None
        except httpx.HTTPError as exc:
            raise GatewayError(f"{name}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise GatewayError(f"{name}: HTTP {resp.status_code}")
        try:   # the API prefixes its JSON with a byte-order mark
            data = json.loads(resp.content.decode("utf-8-sig"), parse_float=Decimal)
        except ValueError:
            raise GatewayError(f"{name}: unreadable reply") from None
        if not isinstance(data, dict) or not isinstance(data.get("messages"), dict):
            raise GatewayError(f"{name}: unexpected reply")
        return data

    async def _transaction(self, key: str, request: dict[str, Any]) -> dict[str, Any]:
        """createTransactionRequest; the transactionResponse of an approval, else a typed error."""
        ref = ref_for(key)
        if request["transactionType"] in ("authOnlyTransaction", "authCaptureTransaction",
                                          "refundTransaction"):
            request = {**request, "order": {"invoiceNumber": ref},
                       "transactionSettings": {"setting": [{"settingName": "duplicateWindow",
                                                            "settingValue": str(DUPLICATE_WINDOW)}]}}
        data = await self._call("createTransactionRequest", {"refId": ref, "transactionRequest": request})
        tr = data.get("transactionResponse") or {}
        if not tr and data["messages"].get("resultCode") == "Error":     # refused before any processing
            raise PaymentError(f"processor refused the request: {self._message(data)}")
        code = str(tr.get("responseCode", ""))
        errors = [str(e.get("errorCode", "")) for e in tr.get("errors") or [] if isinstance(e, dict)]
        if data["messages"].get("resultCode") == "Ok" and code == "1":
            return dict(tr)
        first = errors[0] if errors else ""
        if first == "11":
            raise DuplicateTransaction("duplicate transaction")
        if first in ALREADY:
            return dict(tr)
        if first in INVALID:
            raise InvalidCard(INVALID[first])
        if code == "2" or first in DECLINE:
            raise Declined(DECLINE.get(first, f"declined_{first or code}"))
        if code == "4":
            raise GatewayError("held for review: outcome unknown")
        if first in RETRYABLE or not code:
            raise GatewayError(f"processor error {first or 'without a code'}")
        raise PaymentError(f"processor refused the request: {first or self._message(data)}")

    @staticmethod
    def _message(data: dict[str, Any]) -> str:
        msgs = data["messages"].get("message") or [{}]
        return str(msgs[0].get("code", "")) if isinstance(msgs[0], dict) else ""

    # --- the deposit line ------------------------------------------------------------------------------
    async def authorize(self, idempotency_key: str, card: str, expiry: str, cvv: str,
                        amount_cents: int) -> Authorization:
        request = {"transactionType": "authOnlyTransaction", "amount": dollars(amount_cents),
                   "payment": {"creditCard": {"cardNumber": card, "expirationDate": _expiration(expiry),
                                              "cardCode": cvv}}}
        last4 = card[-4:]
        try:
            tr = await self._transaction(idempotency_key, request)
        except Declined as exc:
            return Authorization(False, "", exc.reason, last4, amount_cents)
        except DuplicateTransaction:
            found = await self.lookup(idempotency_key)
            if found is None or found.status != "approved":
                raise
            if found.amount_cents != amount_cents:
                raise IdempotencyConflict("key used for another amount") from None
            return Authorization(True, found.txn_id, "", last4, amount_cents)
        return Authorization(True, str(tr["transId"]), "", last4, amount_cents)

    async def capture(self, auth_id: str, amount_cents: int) -> None:
        await self._transaction(f"capture:{auth_id}", {
            "transactionType": "priorAuthCaptureTransaction", "amount": dollars(amount_cents),
            "refTransId": auth_id})

    async def void(self, auth_id: str) -> None:
        await self._transaction(f"void:{auth_id}", {"transactionType": "voidTransaction",
                                                     "refTransId": auth_id})

    async def void_by_key(self, idempotency_key: str) -> None:
        """Void what the key authorized, found by its invoice number. The processor cannot be told to
        refuse a later request under the key: callers never re-send a key they voided (the deposit
        trail gives a re-run a new key)."""
        found = await self.lookup(idempotency_key)
        if found is not None and found.status == "approved":
            await self.void(found.txn_id)

    # --- stored cards ----------------------------------------------------------------------------------
    async def tokenize(self, idempotency_key: str, card: str, expiry: str, cvv: str) -> CardToken:
        """createCustomerProfileRequest with one payment profile, validated by the issuer (liveMode).
        One profile per key (merchantCustomerId = ref_for(key)): a repeat finds it again (E00039)."""
        if not card_number_ok(card):
            raise InvalidCard("invalid_number")
        if not (isinstance(expiry, str) and len(expiry) == 4 and expiry.isdigit()):
            raise InvalidCard("invalid_expiry")
        if not cvv_ok(cvv, card):
            raise InvalidCard("incorrect_cvc")
        month, year = expiry_parts(expiry)
        made = CardToken("", brand(card), card[-4:], month, year)
        data = await self._call("createCustomerProfileRequest", {
            "profile": {"merchantCustomerId": ref_for(idempotency_key),
                        "paymentProfiles": {"customerType": "individual", "payment": {"creditCard": {
                            "cardNumber": card, "expirationDate": _expiration(expiry), "cardCode": cvv}}}},
            "validationMode": "liveMode"})
        msgs = data["messages"]
        if msgs.get("resultCode") == "Ok":
            ids = data.get("customerPaymentProfileIdList") or []
            if not ids:
                raise GatewayError("no payment profile in the reply")
            return CardToken(f"{data['customerProfileId']}/{ids[0]}", made.brand, made.last4, month, year)
        code = self._message(data)
        text = str((msgs.get("message") or [{}])[0].get("text", ""))
        if code == "E00039":
            found = re.search(r"ID (\d+)", text)
            if found is None:
                raise GatewayError("duplicate profile without an id")
            return await self._existing_profile(found.group(1), made)
        if code == "E00027":             # the validation transaction failed
            direct = (data.get("validationDirectResponseList") or [""])[0].split(",")
            reason = direct[2] if len(direct) > 2 else ""
            if reason in INVALID:
                raise InvalidCard(INVALID[reason])
            raise Declined(DECLINE.get(reason, f"declined_{reason or 'validation'}"))
        raise PaymentError(f"processor refused the profile: {code}")

    async def _existing_profile(self, profile_id: str, made: CardToken) -> CardToken:
        data = await self._call("getCustomerProfileRequest", {"customerProfileId": profile_id})
        if data["messages"].get("resultCode") != "Ok":
            raise GatewayError("duplicate profile could not be read")
        profiles = (data.get("profile") or {}).get("paymentProfiles") or []
        if not profiles:
            raise GatewayError("duplicate profile without a payment profile")
        number = str(profiles[0].get("payment", {}).get("creditCard", {}).get("cardNumber", ""))
        if not number.endswith(made.last4):
            raise IdempotencyConflict("key used for another card")
        return CardToken(f"{profile_id}/{profiles[0]['customerPaymentProfileId']}", made.brand, made.last4,
                         made.exp_month, made.exp_year)

    async def charge_token(self, idempotency_key: str, token: str, amount_cents: int) -> Charge:
        customer, _, payment = str(token).partition("/")
        if not (customer.isdigit() and payment.isdigit()):
            raise InvalidCard("unknown_token")
        try:
            tr = await self._transaction(idempotency_key, {
                "transactionType": "authCaptureTransaction", "amount": dollars(amount_cents),
                "profile": {"customerProfileId": customer, "paymentProfile": {"paymentProfileId": payment}}})
        except DuplicateTransaction:
            return Charge(*await self._original(idempotency_key, amount_cents))
        return Charge(str(tr["transId"]), amount_cents)

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> Refund:
        """refundTransaction against a settled charge; a charge not yet settled can only be voided
        whole (the processor's rule), so a full refund of one is a void and a partial one refused."""
        amount = dollars(amount_cents)
        data = await self._call("getTransactionDetailsRequest", {"transId": charge_id})
        txn = data.get("transaction")
        if data["messages"].get("resultCode") != "Ok" or not isinstance(txn, dict):
            raise PaymentError(f"unknown charge {charge_id}")
        status = str(txn.get("transactionStatus", ""))
        if status in UNSETTLED_CAPTURED:
            if cents_of(txn.get("settleAmount", 0)) != amount_cents:
                raise PaymentError("a charge not yet settled can only be refunded in full")
            await self.void(charge_id)
            return Refund(charge_id, charge_id, amount_cents)
        if status != "settledSuccessfully":
            raise PaymentError(f"cannot refund a charge in state {status}")
        last4 = str(txn.get("payment", {}).get("creditCard", {}).get("cardNumber", ""))[-4:]
        try:
            tr = await self._transaction(idempotency_key, {
                "transactionType": "refundTransaction", "amount": amount,
                "payment": {"creditCard": {"cardNumber": last4, "expirationDate": "XXXX"}},
                "refTransId": charge_id})
        except DuplicateTransaction:
            refund_id, _ = await self._original(idempotency_key, amount_cents)
            return Refund(refund_id, charge_id, amount_cents)
        return Refund(str(tr["transId"]), charge_id, amount_cents)

    async def _original(self, key: str, amount_cents: int) -> tuple[str, int]:
        """The transaction a "duplicate" answer refers to, if it is this key's with this amount."""
        found = await self.lookup(key)
        if found is None or found.status != "approved":
            raise DuplicateTransaction("duplicate of a transaction this key did not make")
        if found.amount_cents != amount_cents:
            raise IdempotencyConflict("key used for another amount")
        return found.txn_id, amount_cents

    async def lookup(self, idempotency_key: str) -> Transaction | None:
        """The newest unsettled transaction whose invoice number is the key's (getUnsettledTransaction-
        ListRequest, newest first, 1000 per page). Settled ones are not searched: resolve unknown
        outcomes the same day; older ones are an operator's reconciliation."""
        ref = ref_for(idempotency_key)
        data = await self._call("getUnsettledTransactionListRequest", {
            "sorting": {"orderBy": "submitTimeUTC", "orderDescending": True},
            "paging": {"limit": 1000, "offset": 1}})
        if data["messages"].get("resultCode") != "Ok":
            raise GatewayError(f"lookup failed: {self._message(data)}")
        for txn in data.get("transactions") or []:
            if isinstance(txn, dict) and txn.get("invoiceNumber") == ref:
                status = str(txn.get("transactionStatus", ""))
                state = ("approved" if status in APPROVED else "voided" if status == "voided"
                         else "declined")
                kind = ("refund" if status.startswith("refund") else "authorization"
                        if status == "authorizedPendingCapture" else "charge")
                return Transaction(str(txn["transId"]), kind, state,  # type: ignore[arg-type]
                                   cents_of(txn.get("settleAmount", 0)))
        return None
