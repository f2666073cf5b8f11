"""Verification codes by SMS for real (holder_code_sender = sms): a claim over the holders CLI sends one
message through the Twilio-format server on loopback, and the code is found in no log line, no SQL row
and no Redis key; a provider error fails the claim; a claim by call is refused before any code exists."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import create_engine, inspect, select, table, text

from callcontrol.cli import main
from holders import Actor, BadInput
from holders.errors import Unavailable
from holders.registry import Registry
from holders.sender import SmsCodeSender
from holders.sql import make_engine, migrate
from notify.channels import FAILED, RETRY, SENT, Outcome, Outgoing
from tests.support.twilio import FakeTwilio

FAC, NUM = "FAC-01", "+13125550100"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    server = FakeTwilio().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sql_url: str, redis_url: str, twilio: FakeTwilio) -> str:
    for name, value in (("REDIS_URL", redis_url), ("DATABASE_URL", sql_url), ("LOG_FORMAT", "json"),
                        ("HOLDER_CODE_SENDER", "sms"), ("HOLDER_CODE_SECRET", "dev-secret-0123456789abcdef"),
                        ("NOTIFY_SMS_PROVIDER", "twilio"), ("NOTIFY_SMS_URL", twilio.base_url),
                        ("NOTIFY_SMS_ACCOUNT", twilio.account_sid), ("NOTIFY_SMS_TOKEN", twilio.token),
                        ("NOTIFY_SMS_FROM", "+13125550000")):
        monkeypatch.setenv("CALLCONTROL_" + name, value)
    monkeypatch.delenv("CALLCONTROL_CONFIG", raising=False)
    return redis_url


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["holders", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _has(code: str, blob: str) -> bool:
    return re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", blob) is not None


def _sql_dump(sql_url: str) -> str:
    engine = create_engine(sql_url)
    try:
        with engine.connect() as conn:
            return "\n".join(repr(row) for name in inspect(conn).get_table_names()
                             for row in conn.execute(select(text("*")).select_from(table(name))))
    finally:
        engine.dispose()


def _redis_dump(url: str) -> bytes:
    client = redis.Redis.from_url(url)
    try:
        return b"\n".join(key + b"=" + (client.dump(key) or b"") for key in client.scan_iter(count=1000))
    finally:
        client.close()


def test_a_claim_sends_the_code_by_sms_and_keeps_it_nowhere(
        env: str, sql_url: str, twilio: FakeTwilio, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out, err = cli(capsys, "create", "--name", "Pat Doe", "--email", "pat@example.com",
                       "--mobile", "+13125550199", "--language", "es", "--json")
    assert rc == 0, err
    hid = json.loads(out)["holder_id"]
    rc, out, err = cli(capsys, "claim", hid, FAC, NUM)
    assert rc == 0, err
    [sms] = twilio.delivered()
    assert sms["to"] == NUM and sms["from"] == "+13125550000"
    found = re.search(r"su codigo es (\d{6})\.", sms["body"])        # the holder's language
    assert found, sms["body"]
    code = found.group(1)
    logged = out + err
    assert '"holder_code_sent"' in err and not _has(code, logged)
    assert not _has(code, _sql_dump(sql_url))
    assert not _has(code, _redis_dump(env).decode("latin-1"))

    # the code works: the number is linked
    monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))
    rc, out, err = cli(capsys, "verify", hid, FAC, NUM)
    assert rc == 0 and f"belongs to {hid}" in out, err
    assert not _has(code, out + err)


def test_a_provider_error_fails_the_claim(env: str, sql_url: str, twilio: FakeTwilio,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCONTROL_NOTIFY_SMS_TOKEN", "wrong")          # the provider answers 401
    rc, out, err = cli(capsys, "create", "--name", "Pat Doe", "--email", "pat@example.com",
                       "--mobile", "+13125550199", "--json")
    hid = json.loads(out)["holder_id"]
    rc, out, err = cli(capsys, "claim", hid, FAC, NUM)
    assert rc == 3 and "could not send the code" in err
    assert '"holder_code_undelivered"' in err and "CodeNotSent" in err
    assert twilio.delivered() == []
    engine = create_engine(sql_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM holder_codes")).scalars().all() == ["failed"]
    engine.dispose()


class Flaky:
    """An SMS channel that answers `first` once, then accepts."""
    name = "sms"

    def __init__(self, first: Outcome, sent: list[Outgoing]) -> None:
        self.first, self.sent = first, sent

    async def send(self, msg: Outgoing) -> Outcome:
        self.sent.append(msg)
        return self.first if len(self.sent) == 1 else Outcome(SENT, provider_id="x")

    async def lookup(self, msg: Outgoing, exclude: set[str]) -> str | None:
        return None


def test_a_transient_error_is_retried_once_and_call_is_refused(sql_url: str) -> None:
    migrate(sql_url)
    engine = make_engine(sql_url)
    sent: list[Outgoing] = []
    reg = Registry(engine, secret="dev-secret-0123456789abcdef", ledger=None,
                   sender=SmsCodeSender(lambda: Flaky(Outcome(RETRY, error="http 429"), sent)))
    staff = Actor.support("t")
    h = reg.create(staff, name="Pat Doe", email="pat@example.com", mobile="+13125550199")
    reg.claim(staff, h.holder_id, FAC, NUM)
    assert len(sent) == 2 and sent[0] == sent[1] and "your code is" in sent[0].text
    with pytest.raises(BadInput, match="only by sms"):
        reg.claim(staff, h.holder_id, FAC, NUM, channel="call")
    assert len(sent) == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM holder_codes")).scalar_one() == 1
    sent.clear()       # a permanent refusal is not retried: the claim fails
    reg = Registry(engine, secret="dev-secret-0123456789abcdef", ledger=None,
                   sender=SmsCodeSender(lambda: Flaky(Outcome(FAILED, error="http 400"), sent)))
    with pytest.raises(Unavailable):
        reg.claim(staff, h.holder_id, FAC, NUM)
    assert len(sent) == 1
    engine.dispose()
