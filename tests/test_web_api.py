"""The family's API over HTTP (httpx) on a live uvicorn, with a real Redis ledger, real SQL (SQLite and
PostgreSQL) and the sandbox gateway."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import MetaData, create_engine, select

from callcontrol.platform.logs import configure_logging
from tests.support.web import Phone, config, live_app, sign_up

FAC, NUM, NUM2 = "FAC-07", "+13125550100", "+13125550142"
CARD = "4111111111111111"
PASSWORD = "correct horse battery"


@pytest.fixture
def phone() -> Phone:
    return Phone()


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    yield out
    configure_logging("json", "info")


@pytest.fixture
def base(redis_url: str, sql_url: str, phone: Phone) -> Iterator[str]:
    with live_app(config(redis_url, sql_url, phone)) as url:
        yield url


@pytest.fixture
def lite(redis_url: str, tmp_path: object, phone: Phone) -> Iterator[str]:
    """SQLite only: for the tests about sign-in rules, which do not depend on the database."""
    with live_app(config(redis_url, f"sqlite:///{tmp_path}/web.sqlite3", phone)) as url:  # type: ignore
        yield url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def own_account(client: httpx.Client, token: str, phone: Phone, number: str = NUM) -> str:
    r = client.post("/api/v1/accounts", json={"facility_id": FAC, "number": number}, headers=bearer(token))
    assert r.status_code == 202, r.text
    r = client.post("/api/v1/accounts/verify", json={"facility_id": FAC, "number": number,
                                                      "code": phone.last(number)}, headers=bearer(token))
    assert r.status_code == 201, r.text
    return str(r.json()["account_id"])


def add_card(client: httpx.Client, token: str, key: str = "card-key-0001") -> str:
    r = client.post("/api/v1/payment-methods", json={"number": CARD, "expiry": "12/30", "cvv": "123"},
                    headers={**bearer(token), "Idempotency-Key": key})
    assert r.status_code == 201, r.text
    assert r.json()["last4"] == "1111" and "number" not in r.json()
    return str(r.json()["method_id"])


def test_sign_up_verify_add_card_deposit_and_the_balance_shows_it(base: str, phone: Phone) -> None:
    with httpx.Client(base_url=base) as c:
        token = sign_up(c, "pat@example.com")
        account = own_account(c, token, phone)
        method = add_card(c, token)
        assert [m["method_id"] for m in c.get("/api/v1/payment-methods", headers=bearer(token)).json()] \
            == [method]
        body = {"amount_cents": 2500, "method_id": method}
        key = {**bearer(token), "Idempotency-Key": "dep-0001-abcdef"}
        first = c.post(f"/api/v1/accounts/{account}/deposits", json=body, headers=key)
        assert first.status_code == 201, first.text
        assert first.json()["amount"] == {"cents": 2500, "formatted": "$25.00"}
        again = c.post(f"/api/v1/accounts/{account}/deposits", json=body, headers=key)
        assert again.status_code == 201 and again.json() == first.json()      # the same receipt
        other = c.post(f"/api/v1/accounts/{account}/deposits", json={**body, "amount_cents": 3000},
                       headers=key)
        assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"
        got = c.get(f"/api/v1/accounts/{account}", headers=bearer(token)).json()
        assert got["balance"]["available"] == {"cents": 2500, "formatted": "$25.00"}
        assert got["balance"]["posted"]["cents"] == 2500 and got["blocked"] is False
        items = c.get(f"/api/v1/accounts/{account}/statement", headers=bearer(token)).json()["items"]
        assert [(i["kind"], i["amount"]["cents"]) for i in items] == [("deposit", 2500)]
        new_card = c.post(f"/api/v1/accounts/{account}/deposits", headers={**bearer(token),
                          "Idempotency-Key": "dep-0002-abcdef"}, json={
            "amount_cents": 1000, "card": {"number": "4242424242424242", "expiry": "01/31", "cvv": "321"}})
        assert new_card.status_code == 201, new_card.text
        assert c.get(f"/api/v1/accounts/{account}", headers=bearer(token)).json()["balance"]["available"][
            "cents"] == 3500
        too_much = c.post(f"/api/v1/accounts/{account}/deposits", json={**body, "amount_cents": 30_001},
                          headers={**bearer(token), "Idempotency-Key": "dep-0003-abcdef"})
        assert too_much.status_code == 400 and "$300.00" in too_much.json()["detail"]
        declined = c.post(f"/api/v1/accounts/{account}/deposits", headers={**bearer(token),
                          "Idempotency-Key": "dep-0004-abcdef"}, json={
            "amount_cents": 1000, "card": {"number": "4000000000000002", "expiry": "01/31", "cvv": "321"}})
        assert declined.status_code == 402
        r = c.put(f"/api/v1/accounts/{account}/block", json={"blocked": True}, headers=bearer(token))
        assert r.status_code == 200
        assert c.get(f"/api/v1/accounts/{account}", headers=bearer(token)).json()["blocked"] is True


def test_wrong_password_then_lockout_with_a_notification(lite: str, redis_url: str, tmp_path: object
                                                         ) -> None:
    with httpx.Client(base_url=lite) as c:
        sign_up(c, "lee@example.com")
        for _ in range(5):
            r = c.post("/api/v1/tokens", json={"email": "lee@example.com", "password": "wrong password!"})
            assert r.status_code == 401 and r.json()["detail"] == "the email or the password is wrong"
        r = c.post("/api/v1/tokens", json={"email": "lee@example.com", "password": PASSWORD})
        assert r.status_code == 423 and "locked" in r.json()["detail"]
        unknown = c.post("/api/v1/tokens", json={"email": "nobody@example.com", "password": PASSWORD})
        assert unknown.status_code == 401 and unknown.json()["detail"] == "the email or the password is wrong"
    engine = create_engine(f"sqlite:///{tmp_path}/web.sqlite3")
    meta = MetaData()
    meta.reflect(engine, only=["notify_events"])
    with engine.connect() as conn:
        kinds = [r.kind for r in conn.execute(select(meta.tables["notify_events"]))]
    engine.dispose()
    assert kinds == ["signin_locked"]


def test_sign_in_attempts_from_one_address_are_limited(lite: str) -> None:
    with httpx.Client(base_url=lite) as c:
        for i in range(20):
            c.post("/api/v1/tokens", json={"email": f"x{i}@example.com", "password": "wrong password!"})
        sign_up_r = c.post("/api/v1/signup", json={"name": "A", "email": "a@example.com",
                                                    "mobile": "+13125550199", "password": PASSWORD})
        assert sign_up_r.status_code == 201
        r = c.post("/api/v1/tokens", json={"email": "a@example.com", "password": PASSWORD})
        assert r.status_code == 429 and "too many" in r.json()["detail"]


def test_cookie_session_needs_its_csrf_token(lite: str) -> None:
    with httpx.Client(base_url=lite) as c:
        sign_up(c, "kim@example.com")
        r = c.post("/api/v1/session", json={"email": "kim@example.com", "password": PASSWORD})
        assert r.status_code == 201
        flags = r.headers.get_list("set-cookie")
        session = next(h for h in flags if h.startswith("apc_session="))
        assert "HttpOnly" in session and "SameSite=lax" in session
        csrf = r.json()["csrf_token"]
        assert c.get("/api/v1/me").json()["email"] == "kim@example.com"     # reads need no token
        refused = c.patch("/api/v1/me", json={"language": "es"})
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        forged = c.patch("/api/v1/me", json={"language": "es"}, headers={"X-CSRF-Token": "x" * 43})
        assert forged.status_code == 403
        assert c.get("/api/v1/me").json()["language"] == "en"               # nothing changed
        ok = c.patch("/api/v1/me", json={"language": "es", "quiet_hours": {"start_minute": 1320,
                     "end_minute": 420}}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["language"] == "es"
        assert ok.json()["quiet_hours"] == {"start_minute": 1320, "end_minute": 420}
        out = c.delete("/api/v1/tokens/current", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert c.get("/api/v1/me").status_code == 401


def test_the_session_cookie_is_secure_by_default(redis_url: str, tmp_path: object, phone: Phone) -> None:
    cfg = config(redis_url, f"sqlite:///{tmp_path}/web.sqlite3", phone, cookie_secure=True)
    with live_app(cfg) as url, httpx.Client(base_url=url) as c:
        sign_up(c, "sec@example.com")
        r = c.post("/api/v1/session", json={"email": "sec@example.com", "password": PASSWORD})
        session = next(h for h in r.headers.get_list("set-cookie") if h.startswith("apc_session="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=lax" in session


def test_password_reset_by_a_code_to_the_mobile(lite: str, phone: Phone) -> None:
    with httpx.Client(base_url=lite) as c:
        old = sign_up(c, "ann@example.com", mobile="+13125550177")
        assert c.post("/api/v1/password-reset", json={"email": "nobody@example.com"}).status_code == 202
        assert c.post("/api/v1/password-reset", json={"email": "ann@example.com"}).status_code == 202
        code = phone.last("+13125550177")
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        new = "a much better passphrase"
        r = c.post("/api/v1/password-reset/confirm", json={"email": "ann@example.com", "code": wrong,
                                                           "password": new})
        assert r.status_code == 401
        r = c.post("/api/v1/password-reset/confirm", json={"email": "ann@example.com", "code": code,
                                                           "password": new})
        assert r.status_code == 204
        assert c.get("/api/v1/me", headers=bearer(old)).status_code == 401      # signed out everywhere
        assert c.post("/api/v1/tokens", json={"email": "ann@example.com", "password": PASSWORD}
                      ).status_code == 401
        assert c.post("/api/v1/tokens", json={"email": "ann@example.com", "password": new}).status_code == 201
        again = c.post("/api/v1/password-reset/confirm", json={"email": "ann@example.com", "code": code,
                                                               "password": "yet another passphrase"})
        assert again.status_code == 401                                        # single use


def test_another_holders_ids_are_404_everywhere(base: str, phone: Phone) -> None:
    with httpx.Client(base_url=base) as c:
        a = sign_up(c, "a@example.com")
        b = sign_up(c, "b@example.com", mobile="+13125550198")
        acct_a, method_a = own_account(c, a, phone), add_card(c, a, "card-key-a001")
        acct_b, method_b = own_account(c, b, phone, NUM2), add_card(c, b, "card-key-b001")
        first = c.post(f"/api/v1/accounts/{acct_a}/deposits", json={"amount_cents": 500,
                       "method_id": method_a}, headers={**bearer(a), "Idempotency-Key": "dep-a-000001"})
        assert first.status_code == 201
        hb = bearer(b)
        tries = [
            c.get(f"/api/v1/accounts/{acct_a}", headers=hb),
            c.get(f"/api/v1/accounts/{acct_a}/statement", headers=hb),
            c.put(f"/api/v1/accounts/{acct_a}/block", json={"blocked": True}, headers=hb),
            c.post(f"/api/v1/accounts/{acct_a}/deposits", json={"amount_cents": 500, "method_id": method_b},
                   headers={**hb, "Idempotency-Key": "dep-b-000001"}),
            c.post(f"/api/v1/accounts/{acct_b}/deposits", json={"amount_cents": 500, "method_id": method_a},
                   headers={**hb, "Idempotency-Key": "dep-b-000002"}),
            c.delete(f"/api/v1/payment-methods/{method_a}", headers=hb),
        ]
        assert [r.status_code for r in tries] == [404] * len(tries), [r.text for r in tries]
        assert [x["account_id"] for x in c.get("/api/v1/accounts", headers=hb).json()] == [acct_b]
        assert [m["method_id"] for m in c.get("/api/v1/payment-methods", headers=hb).json()] == [method_b]
        # and nothing of A's changed
        got = c.get(f"/api/v1/accounts/{acct_a}", headers=bearer(a)).json()
        assert got["balance"]["available"]["cents"] == 500 and got["blocked"] is False
        assert [m["method_id"] for m in c.get("/api/v1/payment-methods", headers=bearer(a)).json()] \
            == [method_a]
        assert c.get(f"/api/v1/accounts/{acct_b}", headers=bearer(b)).json()["balance"]["available"][
            "cents"] == 0
        claimed = c.post("/api/v1/accounts", json={"facility_id": FAC, "number": NUM}, headers=hb)
        assert claimed.status_code == 409                                     # A's number: already claimed


def test_block_one_inmate_then_unblock_and_only_the_holder_can(base: str, phone: Phone,
                                                              redis_url: str) -> None:
    from ledger.facade import SyncLedger

    with httpx.Client(base_url=base) as c:
        a = sign_up(c, "ina@example.com")
        b = sign_up(c, "ben@example.com", mobile="+13125550198")
        acct = own_account(c, a, phone)
        url = f"/api/v1/accounts/{acct}"
        r = c.put(f"{url}/block", json={"blocked": True, "inmate_id": "1042"}, headers=bearer(a))
        assert r.status_code == 200 and r.json() == {"account_id": acct, "blocked": True, "inmate_id": "1042"}
        assert c.get(f"{url}/blocks", headers=bearer(a)).json() == {"account_id": acct, "facility": False,
                                                                    "inmates": ["1042"]}
        assert c.get(url, headers=bearer(a)).json()["blocked"] is False       # the facility is not
        with SyncLedger(redis_url) as led:                                     # what the inmate flow reads
            assert led.is_blocked(FAC, NUM, "1042") and not led.is_blocked(FAC, NUM, "1043")
        bad = c.put(f"{url}/block", json={"blocked": True, "inmate_id": "10/42"}, headers=bearer(a))
        assert bad.status_code == 422
        other = [c.put(f"{url}/block", json={"blocked": False, "inmate_id": "1042"}, headers=bearer(b)),
                 c.get(f"{url}/blocks", headers=bearer(b))]
        assert [x.status_code for x in other] == [404, 404]
        assert c.get(f"{url}/blocks", headers=bearer(a)).json()["inmates"] == ["1042"]   # unchanged
        r = c.put(f"{url}/block", json={"blocked": False, "inmate_id": "1042"}, headers=bearer(a))
        assert r.status_code == 200
        assert c.get(f"{url}/blocks", headers=bearer(a)).json()["inmates"] == []
        with SyncLedger(redis_url) as led:
            assert not led.is_blocked(FAC, NUM, "1042")


def test_no_card_number_password_or_code_in_logs_sql_or_redis(lite: str, phone: Phone, redis_url: str,
                                                              tmp_path: object, log_text: io.StringIO
                                                              ) -> None:
    with httpx.Client(base_url=lite) as c:
        token = sign_up(c, "zed@example.com")
        account = own_account(c, token, phone)
        code = phone.last(NUM)
        add_card(c, token)
        c.post(f"/api/v1/accounts/{account}/deposits",
               headers={**bearer(token), "Idempotency-Key": "k-000001"},
               json={"amount_cents": 700, "card": {"number": "5555555555554444", "expiry": "02/32",
                                                   "cvv": "987"}})
        c.post("/api/v1/tokens", json={"email": "zed@example.com", "password": "a wrong password"})
    secrets = [CARD, "5555555555554444", PASSWORD, "a wrong password", code, token]
    logs = log_text.getvalue()
    assert "web_signed_up" in logs or "payment_method_added" in logs
    engine = create_engine(f"sqlite:///{tmp_path}/web.sqlite3")
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        dump = json.dumps([[list(map(str, row)) for row in conn.execute(select(t))]
                           for t in meta.tables.values()])
    engine.dispose()
    client = redis.Redis.from_url(redis_url)
    stored = " ".join(repr(client.dump(k)) + repr(k) for k in client.keys("*"))
    client.close()
    for secret in secrets:
        assert secret not in logs and secret not in dump and secret not in stored, secret
    assert "987" not in [w for w in dump.split('"')]                       # the CVV is no value anywhere


def test_autoreload_and_refund_request(lite: str, phone: Phone) -> None:
    with httpx.Client(base_url=lite) as c:
        token = sign_up(c, "ray@example.com")
        account, method = own_account(c, token, phone), add_card(c, token)
        h = bearer(token)
        assert c.get(f"/api/v1/accounts/{account}/autoreload", headers=h).json()["enabled"] is False
        on = c.put(f"/api/v1/accounts/{account}/autoreload", headers=h,
                   json={"threshold_cents": 500, "amount_cents": 2000, "method_id": method})
        assert on.status_code == 200 and on.json()["enabled"] is True
        assert on.json()["amount"] == {"cents": 2000, "formatted": "$20.00"}
        assert c.delete(f"/api/v1/accounts/{account}/autoreload", headers=h).json()["enabled"] is False
        paid = c.post(f"/api/v1/accounts/{account}/deposits", json={"amount_cents": 1200,
                      "method_id": method}, headers={**h, "Idempotency-Key": "dep-r-000001"})
        assert paid.status_code == 201
        r = c.post(f"/api/v1/accounts/{account}/refunds", headers={**h, "Idempotency-Key": "ref-000001"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "done" and r.json()["to_cards"]["cents"] == 1200
        again = c.post(f"/api/v1/accounts/{account}/refunds",
                       headers={**h, "Idempotency-Key": "ref-000001"})
        assert again.json() == r.json()
        assert c.get(f"/api/v1/accounts/{account}", headers=h).json()["balance"]["available"]["cents"] == 0
        other = sign_up(c, "sue@example.com", mobile="+13125550198")
        for resp in (c.get(f"/api/v1/accounts/{account}/autoreload", headers=bearer(other)),
                     c.post(f"/api/v1/accounts/{account}/refunds",
                            headers={**bearer(other), "Idempotency-Key": "ref-000002"})):
            assert resp.status_code == 404
