"""A local Authorize.Net on loopback for the adapter's tests: a real HTTP server speaking the JSON API's
request and response formats (UTF-8 BOM first, as the real one sends). Its card conventions are its own:
4000000000000002 declines, a Luhn-invalid number is error 6; the rest is approved."""

from __future__ import annotations

import json
import re
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from payments.cards import luhn_ok

OK = {"resultCode": "Ok", "message": [{"code": "I00001", "text": "Successful."}]}


def dumps(reply: dict[str, Any]) -> str:
    """JSON with amounts as bare numbers (25.00), as the API writes them."""
    text = json.dumps(reply, default=lambda d: f"@@{d}@@")
    return re.sub(r'"@@([0-9.]+)@@"', r"\1", text)


def error(code: str, text: str) -> dict[str, Any]:
    return {"resultCode": "Error", "message": [{"code": code, "text": text}]}


class FakeAuthorizeNet:
    def __init__(self, login: str = "login-id", key: str = "tx-key-secret") -> None:
        self.login, self.key = login, key
        self.requests: list[str] = []          # raw request bodies, in order
        self.faults: list[str] = []            # next requests: "timeout", "500", "malformed"
        self.delay = 1.0
        self.txns: list[dict[str, Any]] = []
        self.profiles: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._next = 2_000_000
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                fake.requests.append(body)
                fault = fake.faults.pop(0) if fake.faults else ""
                if fault == "500":
                    self._send(500, b"<html>Internal Server Error</html>")
                    return
                if fault == "malformed":
                    self._send(200, b"\xef\xbb\xbf{\"messages\": {\"resultCode\": ")
                    return
                with fake._lock:
                    reply = fake.handle(json.loads(body, parse_float=Decimal))
                if fault == "timeout":
                    time.sleep(fake.delay)          # processed, but the reply comes too late
                self._send(200, b"\xef\xbb\xbf" + dumps(reply).encode())

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/xml/v1/request.api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def request(self, i: int) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.requests[i])
        return parsed

    def settle_all(self) -> None:
        for t in self.txns:
            if t["transactionStatus"] == "capturedPendingSettlement":
                t["transactionStatus"] = "settledSuccessfully"

    # --- the API ---------------------------------------------------------------------------------------
    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def handle(self, payload: dict[str, Any]) -> dict[str, Any]:
        (name, req), = payload.items()
        auth = req.get("merchantAuthentication", {})
        if (auth.get("name"), auth.get("transactionKey")) != (self.login, self.key):
            return {"messages": error("E00007", "User authentication failed due to invalid "
                                                "authentication values.")}
        handler = getattr(self, "do_" + name)
        out: dict[str, Any] = handler(req)
        return out

    def do_createCustomerProfileRequest(self, req: dict[str, Any]) -> dict[str, Any]:
        profile = req["profile"]
        for pid, p in self.profiles.items():
            if p["merchantCustomerId"] == profile["merchantCustomerId"]:
                return {"messages": error("E00039", f"A duplicate record with ID {pid} already exists.")}
        card = profile["paymentProfiles"]["payment"]["creditCard"]["cardNumber"]
        if not luhn_ok(card):
            return {"validationDirectResponseList": ["3,1,6,The credit card number is invalid.,,P,0"],
                    "messages": error("E00027", "The credit card number is invalid.")}
        pid, pay = self._id(), self._id()
        self.profiles[pid] = {"merchantCustomerId": profile["merchantCustomerId"], "payId": pay,
                              "card": card}
        return {"customerProfileId": pid, "customerPaymentProfileIdList": [pay],
                "customerShippingAddressIdList": [],
                "validationDirectResponseList": ["1,1,1,This transaction has been approved.,A1,Y,0"],
                "messages": OK}

    def do_getCustomerProfileRequest(self, req: dict[str, Any]) -> dict[str, Any]:
        p = self.profiles[req["customerProfileId"]]
        return {"profile": {"merchantCustomerId": p["merchantCustomerId"], "customerProfileId":
                            req["customerProfileId"], "paymentProfiles": [{
                                "customerPaymentProfileId": p["payId"],
                                "payment": {"creditCard": {"cardNumber": "XXXX" + p["card"][-4:],
                                                           "expirationDate": "XXXX"}}}]},
                "messages": OK}

    def _tx_reply(self, ref: str, code: str, trans_id: str = "0", err: str = "",
                  text: str = "") -> dict[str, Any]:
        tr: dict[str, Any] = {"responseCode": code, "authCode": "", "transId": trans_id, "refTransID": ""}
        if err:
            tr["errors"] = [{"errorCode": err, "errorText": text}]
            return {"transactionResponse": tr, "refId": ref,
                    "messages": error("E00027", "The transaction was unsuccessful.")}
        tr["messages"] = [{"code": "1", "description": "This transaction has been approved."}]
        return {"transactionResponse": tr, "refId": ref, "messages": OK}

    def do_createTransactionRequest(self, req: dict[str, Any]) -> dict[str, Any]:
        tx, ref = req["transactionRequest"], req.get("refId", "")
        kind = tx["transactionType"]
        if kind in ("priorAuthCaptureTransaction", "voidTransaction"):
            orig = next((t for t in self.txns if t["transId"] == tx["refTransId"]), None)
            if orig is None:
                return self._tx_reply(ref, "3", err="33", text="A valid referenced transaction ID is "
                                      "required.")
            if kind == "voidTransaction":
                if orig["transactionStatus"] == "voided":
                    return self._tx_reply(ref, "1", orig["transId"], "310", "already voided")
                orig["transactionStatus"] = "voided"
            else:
                if orig["transactionStatus"] != "authorizedPendingCapture":
                    return self._tx_reply(ref, "1", orig["transId"], "311", "already captured")
                orig["transactionStatus"], orig["settleAmount"] = "capturedPendingSettlement", tx["amount"]
            return self._tx_reply(ref, "1", orig["transId"])
        invoice = tx["order"]["invoiceNumber"]
        amount = Decimal(tx["amount"])
        for t in self.txns:
            if t["invoiceNumber"] == invoice and t["settleAmount"] == amount and t["type"] == kind:
                return self._tx_reply(ref, "3", err="11", text="A duplicate transaction has been submitted.")
        if "profile" in tx:
            p = self.profiles[tx["profile"]["customerProfileId"]]
            card = p["card"]
        else:
            card = tx["payment"]["creditCard"]["cardNumber"]
        if kind == "refundTransaction":
            orig = next(t for t in self.txns if t["transId"] == tx["refTransId"])
            given = sum((t["settleAmount"] for t in self.txns if t.get("refTransId") == orig["transId"]),
                        Decimal(0))
            if given + amount > orig["settleAmount"]:
                return self._tx_reply(ref, "3", err="55", text="The sum of credits against the referenced "
                                      "transaction would exceed original debit amount.")
            card = orig["card"]
        elif not luhn_ok(card):
            return self._tx_reply(ref, "3", err="6", text="The credit card number is invalid.")
        elif card == "4000000000000002":
            self.txns.append({"transId": self._id(), "invoiceNumber": invoice, "settleAmount": amount,
                              "transactionStatus": "declined", "type": kind, "card": card})
            return self._tx_reply(ref, "2", "0", "2", "This transaction has been declined.")
        status = {"authOnlyTransaction": "authorizedPendingCapture",
                  "refundTransaction": "refundPendingSettlement"}.get(kind, "capturedPendingSettlement")
        tid = self._id()
        self.txns.append({"transId": tid, "invoiceNumber": invoice, "settleAmount": amount,
                          "transactionStatus": status, "type": kind, "card": card,
                          "refTransId": tx.get("refTransId", "")})
        return self._tx_reply(ref, "1", tid)

    def do_getTransactionDetailsRequest(self, req: dict[str, Any]) -> dict[str, Any]:
        t = next((t for t in self.txns if t["transId"] == req["transId"]), None)
        if t is None:
            return {"messages": error("E00040", "The record cannot be found.")}
        return {"transaction": {"transId": t["transId"], "transactionType": t["type"],
                                "transactionStatus": t["transactionStatus"],
                                "settleAmount": t["settleAmount"],
                                "order": {"invoiceNumber": t["invoiceNumber"]},
                                "payment": {"creditCard": {"cardNumber": "XXXX" + t["card"][-4:],
                                                           "expirationDate": "XXXX", "cardType": "Visa"}}},
                "messages": OK}

    def do_getUnsettledTransactionListRequest(self, req: dict[str, Any]) -> dict[str, Any]:
        rows = [{"transId": t["transId"], "transactionStatus": t["transactionStatus"],
                 "invoiceNumber": t["invoiceNumber"], "accountNumber": "XXXX" + t["card"][-4:],
                 "settleAmount": t["settleAmount"]}
                for t in reversed(self.txns) if t["transactionStatus"] != "settledSuccessfully"]
        if not rows:
            return {"messages": {"resultCode": "Ok", "message": [{"code": "I00004",
                                                                   "text": "No records found."}]}}
        return {"transactions": rows, "totalNumInResultSet": len(rows), "messages": OK}
