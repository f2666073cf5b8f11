"""Request2Call through the family's API over HTTP (httpx) on a live uvicorn, with a real Redis ledger
and real SQL (SQLite and PostgreSQL): create, list with each status and its dates, cancel; the refusals
as plain sentences; another holder's request is 404 and stays as it was."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from holders.request2call import DAY_MS, CallRequests
from holders.sql import make_engine
from holders.sql.schema import call_requests
from tests.support.web import REPO, Phone, config, live_app, sign_up
from tests.test_web_api import FAC, NUM, NUM2, bearer, own_account

PROBLEM = "application/problem+json"


@pytest.fixture
def phone() -> Phone:
    return Phone()


@pytest.fixture
def facilities(tmp_path: Path) -> Path:
    """The sample facilities, with FAC-21's Request2Call switched off in its file."""
    target = tmp_path / "facility_data"
    shutil.copytree(REPO / "facility_data", target)
    fac21 = target / "facilities" / "FAC-21.toml"
    fac21.write_text(fac21.read_text().replace("schema = 1\n", "schema = 1\nrequest2call = false\n", 1))
    return target


@pytest.fixture
def base(redis_url: str, sql_url: str, phone: Phone, facilities: Path) -> Iterator[str]:
    with live_app(config(redis_url, sql_url, phone, facility_dir=facilities)) as url:
        yield url


def ask(c: httpx.Client, token: str, inmate: str, number: str = NUM, facility: str = FAC) -> httpx.Response:
    return c.post("/api/v1/request2call", headers=bearer(token),
                  json={"facility_id": facility, "inmate_id": inmate, "number": number})


def test_create_list_cancel_and_each_status_with_its_dates(base: str, phone: Phone, sql_url: str) -> None:
    with httpx.Client(base_url=base) as c:
        token = sign_up(c, "pat@example.com")
        own_account(c, token, phone)
        made = {}
        for inmate in ("A-100", "B-200", "C-300", "D-400"):
            r = ask(c, token, inmate)
            assert r.status_code == 201, r.text
            made[inmate] = r.json()
        first = made["A-100"]
        assert first["status"] == "pending" and first["number"] == NUM and first["facility_id"] == FAC
        assert first["expires_ts"] - first["created_ts"] == 7 * DAY_MS and first["closed_ts"] is None
        # the inmate calls for B; C's week passes; D is cancelled
        engine = make_engine(sql_url)
        try:
            assert CallRequests(engine).answered(made["B-200"]["request_id"], "call-1")
            with engine.begin() as conn:
                conn.execute(update(call_requests).where(
                    call_requests.c.request_id == made["C-300"]["request_id"]).values(expires_ts=1))
        finally:
            engine.dispose()
        gone = c.delete(f"/api/v1/request2call/{made['D-400']['request_id']}", headers=bearer(token))
        assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
        assert gone.json()["closed_ts"] >= gone.json()["created_ts"]
        listed = c.get("/api/v1/request2call", headers=bearer(token))
        assert listed.status_code == 200
        status = {r["inmate_id"]: r["status"] for r in listed.json()}
        assert status == {"A-100": "pending", "B-200": "answered", "C-300": "expired", "D-400": "cancelled"}
        assert all(r["created_ts"] > 0 and r["expires_ts"] > 0 for r in listed.json())
        again = c.delete(f"/api/v1/request2call/{made['D-400']['request_id']}", headers=bearer(token))
        assert again.status_code == 409 and "no longer waiting" in again.json()["detail"]
        # the expired one freed its slot: a new request for C is taken
        assert ask(c, token, "C-300").status_code == 201


def test_refusals_are_plain_sentences(base: str, phone: Phone) -> None:
    with httpx.Client(base_url=base) as c:
        token = sign_up(c, "pat@example.com")
        own_account(c, token, phone)
        assert ask(c, token, "A-100").status_code == 201
        cases = {
            "pending": (ask(c, token, "A-100"), 409, "you already have a request waiting for inmate A-100"),
            "unverified": (ask(c, token, "A-101", number=NUM2), 400,
                           f"{NUM2} is not one of your verified numbers at {FAC}"),
            "off": (ask(c, token, "A-102", facility="FAC-21"), 409, "does not take call requests"),
            "unknown": (ask(c, token, "A-103", facility="FAC-99"), 400, "there is no facility 'FAC-99'"),
            "inmate": (ask(c, token, "A 1; drop"), 422, "inmate_id"),
        }
        for name, (r, status, words) in cases.items():
            assert r.status_code == status, (name, r.text)
            assert r.headers["content-type"].startswith(PROBLEM) and words in r.json()["detail"], name
        assert [r["inmate_id"] for r in c.get("/api/v1/request2call", headers=bearer(token)).json()] \
            == ["A-100"]
        assert c.get("/api/v1/request2call").status_code == 401


def test_another_holders_request_is_404_and_unchanged(base: str, phone: Phone) -> None:
    with httpx.Client(base_url=base) as c:
        a = sign_up(c, "a@example.com")
        b = sign_up(c, "b@example.com", mobile="+13125550198")
        own_account(c, a, phone)
        own_account(c, b, phone, NUM2)
        mine = ask(c, a, "A-100").json()["request_id"]
        assert c.delete(f"/api/v1/request2call/{mine}", headers=bearer(b)).status_code == 404
        assert c.delete("/api/v1/request2call/r_missing", headers=bearer(b)).status_code == 404
        assert c.get("/api/v1/request2call", headers=bearer(b)).json() == []
        # B cannot ask for a call to A's number either
        assert ask(c, b, "A-100", number=NUM).status_code == 400
        assert [r["status"] for r in c.get("/api/v1/request2call", headers=bearer(a)).json()] == ["pending"]
