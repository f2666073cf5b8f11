"""`callcontrol holders ...` end to end: real SQL, real Redis, the dev code sender's log line."""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import pytest

from callcontrol.cli import main
from ledger import account_id_for
from ledger.facade import SyncLedger

FAC, NUM = "FAC-01", "+13125550100"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sql_url: str, redis_url: str) -> str:
    for name, value in (("REDIS_URL", redis_url), ("DATABASE_URL", sql_url), ("LOG_FORMAT", "json"),
                        ("HOLDER_CODE_SENDER", "dev"), ("HOLDER_CODE_SECRET", "dev-secret-0123456789abcdef")):
        monkeypatch.setenv("CALLCONTROL_" + name, value)
    monkeypatch.delenv("CALLCONTROL_CONFIG", raising=False)
    return redis_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["holders", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def js(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


def _store_card(sql_url: str, holder_id: str) -> None:
    """The holder stores a card (as the web does): payments keeps a token, brand, last 4 and expiry."""
    import payments.sql
    from payments.methods import PaymentMethods
    from payments.sandbox import SandboxGateway

    payments.sql.migrate(sql_url)
    engine = payments.sql.make_engine(sql_url)
    try:
        asyncio.run(PaymentMethods(engine, SandboxGateway(), "sandbox").add(
            holder_id, "add-1", "4111111111111111", "1230", "737"))
    finally:
        engine.dispose()


def test_support_creates_claims_verifies_shows_and_pages_history(
        env: str, sql_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with SyncLedger(env) as led:           # the 800 line opened and funded this account
        account = led.open_account("dep-1:open", FAC, NUM)
        led.deposit("dep-1:dep", account, 2_500, source="ivr")
    hid = js(capsys, "create", "--name", "Pat Doe", "--email", "Pat@Example.com",
             "--mobile", "+13125550199", "--language", "es")["holder_id"]
    rc, out, err = run(capsys, "claim", hid, FAC, NUM, "--channel", "sms")
    assert rc == 0 and "a code was sent to +13125550100" in out
    code = next(json.loads(x)["dev_code"] for x in err.splitlines() if '"dev_code"' in x)
    assert re.fullmatch(r"\d{6}", code) and code not in out
    monkeypatch.setattr("sys.stdin", io.StringIO("000000\n" if code != "000000" else "111111\n"))
    rc, _, err = run(capsys, "verify", hid, FAC, NUM)
    assert rc == 2 and "wrong code" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))
    rc, out, _ = run(capsys, "verify", hid, FAC, NUM)
    assert rc == 0 and f"belongs to {hid}" in out

    shown = js(capsys, "show", hid)
    assert shown["holder"]["email"] == "Pat@Example.com"
    [acct] = shown["accounts"]
    assert (acct["account"], acct["facility"], acct["number"], acct["verified"]) == (account, FAC, NUM, True)
    assert (acct["posted"], acct["held"], acct["available"]) == (2_500, 0, 2_500)
    assert shown["payment_methods"] == []
    _store_card(sql_url, hid)
    card = {"brand": "visa", "last4": "1111", "expiry": "12/30"}
    assert js(capsys, "show", hid)["payment_methods"] == [card]
    rc, out, _ = run(capsys, "show", hid)
    assert rc == 0 and "$25.00" in out and "1111" in out and "4111111111111111" not in out

    assert [h["holder_id"] for h in js(capsys, "find", "--number", NUM)] == [hid]
    assert [h["holder_id"] for h in js(capsys, "find", "--email", "pat@EXAMPLE.com")] == [hid]

    with SyncLedger(env) as led:
        for i in range(3):
            led.deposit(f"dep-{i + 2}:dep", account, 100 * (i + 1))
        led.record_call("call-9:record", {
            "call_id": "call-9", "account_id": account, "facility_id": FAC, "inmate_id": "I-7",
            "dialled": "3125550100", "number_e164": NUM, "call_class": "local", "outcome": "completed",
            "reason": "", "started_at": "2099-01-01T00:00:00Z", "answered_at": "", "accepted_at": "",
            "ended_at": "", "billed_seconds": 126, "amount": 126, "recorded": True, "privileged": False})
    pages = [js(capsys, "history", hid, "--limit", "2", "--page", str(n), *(["--no-sync"] if n > 1 else []))
             for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    found = [(e["kind"], e["amount"]) for p in pages for e in p]
    assert found == [("call", -126), ("deposit", 300), ("deposit", 200), ("deposit", 100), ("deposit", 2_500)]
    assert "completed 126s inmate I-7 (call-9)" in pages[0][0]["detail"]


def test_exit_codes(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "show", "h_nobody")[0] == 1
    assert run(capsys, "find", "--email", "nobody@example.com")[0] == 1
    rc, _, err = run(capsys, "create", "--name", "Pat", "--email", "not-an-email", "--mobile", NUM)
    assert rc == 2 and "not an email address" in err
    rc, _, err = run(capsys, "create", "--name", "Pat", "--email", "p@example.com", "--mobile", NUM,
                     "--time-zone", "Nowhere/Land")
    assert rc == 2 and "IANA" in err
    hid = js(capsys, "create", "--name", "Pat", "--email", "p@example.com", "--mobile", NUM)["holder_id"]
    assert run(capsys, "claim", hid, "FAC 01", NUM)[0] == 2
    assert run(capsys, "claim", hid, FAC, "+1555")[0] == 2
    assert account_id_for(FAC, NUM) not in run(capsys, "show", hid)[1]


def test_claim_without_a_code_sender_is_unavailable(env: str, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hid = js(capsys, "create", "--name", "Pat", "--email", "p@example.com", "--mobile", NUM)["holder_id"]
    monkeypatch.setenv("CALLCONTROL_HOLDER_CODE_SENDER", "")
    rc, _, err = run(capsys, "claim", hid, FAC, NUM)
    assert rc == 3 and "no code sender" in err


def test_support_shows_and_sets_a_holders_alert_preferences(
        env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    hid = js(capsys, "create", "--name", "Pat", "--email", "p@example.com", "--mobile", NUM)["holder_id"]
    rc, _, err = run(capsys, "claim", hid, FAC, NUM)
    code = next(json.loads(x)["dev_code"] for x in err.splitlines() if '"dev_code"' in x)
    monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))
    account = js(capsys, "verify", hid, FAC, NUM)["account_id"]

    shown = js(capsys, "alerts", "show", hid)
    assert (shown["quiet"], shown["off_channels"], shown["muted_kinds"]) == ("21:00-08:00", [], [])
    assert shown["low_balance"] == [{"account": account, "threshold_cents": None, "channels": []}]

    got = js(capsys, "alerts", "set", hid, "--quiet", "22:00-07:30", "--off", "email",
             "--mute", "deposit_receipt,refund_issued", "--account", account, "--threshold", "7.50",
             "--channels", "sms,call")
    assert (got["quiet"], got["quiet_start"], got["quiet_end"]) == ("22:00-07:30", 22 * 60, 7 * 60 + 30)
    assert got["off_channels"] == ["email"] and got["muted_kinds"] == ["deposit_receipt", "refund_issued"]
    assert got["low_balance"] == [{"account": account, "threshold_cents": 750, "channels": ["call", "sms"]}]
    assert js(capsys, "alerts", "show", hid, "--account", account) == got

    # only what is given changes; "none" clears
    got = js(capsys, "alerts", "set", hid, "--off", "none")
    assert got["off_channels"] == [] and got["quiet"] == "22:00-07:30" and got["muted_kinds"]
    rc, out, _ = run(capsys, "alerts", "show", hid)
    assert rc == 0 and "22:00-07:30" in out and "under $7.50" in out

    # exit codes: 1 not found, 2 bad input (nothing written)
    assert run(capsys, "alerts", "show", "h_nobody")[0] == 1
    assert run(capsys, "alerts", "set", hid, "--account", "ap_nothere", "--threshold", "5")[0] == 1
    for bad in (["--quiet", "25:00-07:00"], ["--quiet", "22:00"], ["--off", "fax"],
                ["--mute", "verification_code"], ["--threshold", "5"], ["--account", account],
                ["--account", account, "--threshold", "-1"], ["--account", account, "--threshold", "5",
                                                             "--channels", "pigeon"], []):
        rc, _, err = run(capsys, "alerts", "set", hid, *bad)
        assert rc == 2, (bad, err)
    assert js(capsys, "alerts", "show", hid)["quiet"] == "22:00-07:30"
    got = js(capsys, "alerts", "set", hid, "--account", account, "--threshold", "0")
    assert got["low_balance"][0]["threshold_cents"] == 0
