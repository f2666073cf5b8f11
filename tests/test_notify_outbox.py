"""The outbox against real SQL (SQLite and PostgreSQL) and SMS against a local Twilio-format server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from notify import Event, NotifyConfig, Recipient, StaticDirectory, Worker, enqueue, unfunded_attempt
from notify.inbound import handle_inbound
from notify.model import DEPOSIT_RECEIPT, BadEvent
from notify.outbox import listing, retry
from notify.sms import TwilioSMS, WebhookSMS
from notify.sql import make_engine, messages, migrate
from tests.support.twilio import FakeTwilio

T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC).timestamp()     # noon in Chicago: outside quiet hours


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    server = FakeTwilio().start()
    yield server
    server.stop()


def sms(server: FakeTwilio, timeout: float = 1.0) -> TwilioSMS:
    return TwilioSMS(server.account_sid, server.token, "+13125550000", base_url=server.base_url,
                     timeout=timeout)


def person(number: str, **kw: object) -> Recipient:
    return Recipient("sms", number, time_zone="America/Chicago", **kw)   # type: ignore[arg-type]


def receipt(account: str, number: str, key: str = "") -> Event:
    return Event(DEPOSIT_RECEIPT, key or f"dep:{account}", account_id=account, number_e164=number,
                 payload={"amount_cents": 2500, "balance_cents": 3100, "at_ms": int(T0 * 1000),
                          "number": number})


def states(engine: sa.Engine) -> dict[str, tuple[str, str, int]]:
    with engine.connect() as conn:
        return {r.address: (r.state, r.reason, r.attempts) for r in conn.execute(sa.select(messages))}


async def drain(worker: Worker, clock: Clock, rounds: int = 12, step: float = 3700.0) -> None:
    for _ in range(rounds):
        await worker.run_once()
        clock.t += step


def test_enqueue_is_idempotent_transactional_and_delivers_once(sql_url: str, twilio: FakeTwilio) -> None:
    migrate(sql_url)
    engine = make_engine(sql_url)
    with engine.begin() as conn:
        assert enqueue(conn, receipt("A1", "+13125550101")) is True
    with engine.begin() as conn:        # a retry of the same cause, or a second controller
        assert enqueue(conn, receipt("A1", "+13125550101")) is False
    with pytest.raises(RuntimeError), engine.begin() as conn:   # the cause rolled back: so does the event
        enqueue(conn, receipt("A2", "+13125550102"))
        raise RuntimeError("the deposit failed")
    with pytest.raises(BadEvent), engine.begin() as conn:
        enqueue(conn, Event(DEPOSIT_RECEIPT, "k", payload={"card_number": "4111"}))
    both = [person("+13125550101"), Recipient("email", "a1@example.org")]
    directory = StaticDirectory(by_account={"A1": both,
                                            "A2": [person("+13125550102")]})
    clock = Clock()
    channel = sms(twilio)
    worker = Worker(engine, directory, {"sms": channel}, clock=clock)
    asyncio.run(drain(worker, clock, rounds=3))
    assert [m["to"] for m in twilio.delivered()] == ["+13125550101"]
    assert "$25.00" in twilio.delivered()[0]["body"]
    got = states(engine)
    assert got["+13125550101"][0] == "sent"
    assert got["a1@example.org"][0] == "pending"        # no email channel in this worker: left for one
    assert "+13125550102" not in got
    engine.dispose()


def test_provider_outcomes_retry_fail_and_opt_out(sql_url: str, twilio: FakeTwilio) -> None:
    migrate(sql_url)
    engine = make_engine(sql_url)
    numbers = ["+15550000400", "+15550021610", "+15550000429", "+15550000500", "+15550000408", "+13125550199"]
    with engine.begin() as conn:
        for n in numbers:
            enqueue(conn, receipt(f"acct{n}", n))
    directory = StaticDirectory(by_account={f"acct{n}": [person(n)] for n in numbers})
    clock = Clock()
    worker = Worker(engine, directory, {"sms": sms(twilio, timeout=0.5)}, clock=clock)
    asyncio.run(drain(worker, clock, rounds=6))
    got = states(engine)
    assert got["+15550000400"][:2] == ("failed", "permanent")
    assert got["+15550021610"][:2] == ("failed", "opted_out")
    assert got["+15550000429"][0] == got["+15550000500"][0] == "sent"
    assert got["+15550000408"][0] == "sent"
    # each number received exactly one message: the timed-out send was found by lookup, not re-sent
    for n in ("+15550000429", "+15550000500", "+15550000408", "+13125550199"):
        assert len(twilio.delivered(n)) == 1, n
    assert ("GET", "+15550000408") in twilio.requests
    assert [r for r in twilio.requests if r == ("POST", "+15550000408")] == [("POST", "+15550000408")]
    with engine.connect() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.address == "+15550000400")).one()
        assert row.last_error == "http 400 code 21211" and twilio.token not in row.last_error
        # the provider's opt-out is remembered: a new message to that number is skipped, not sent
    with engine.begin() as conn:
        enqueue(conn, receipt("acct+15550021610", "+15550021610", key="second"))
    asyncio.run(drain(worker, clock, rounds=2))
    with engine.connect() as conn:
        later = [r.state for r in listing(conn, address="+15550021610")]
        assert sorted(later) == ["failed", "skipped"]
        assert retry(conn, listing(conn, address="+15550000400")[0].message_id) is True
        assert retry(conn, listing(conn, address="+13125550199")[0].message_id) is False   # sent: no resend
        conn.commit()
    assert "tok-secret" not in repr(worker.channels["sms"])
    engine.dispose()


def test_quiet_hours_rate_limit_and_opted_out_channels(tmp_path: object, twilio: FakeTwilio) -> None:
    url = f"sqlite:///{tmp_path}/n.sqlite3"
    migrate(url)
    engine = make_engine(url)
    night = datetime(2026, 3, 3, 4, 0, tzinfo=UTC).timestamp()     # 22:00 in Chicago
    with engine.begin() as conn:
        for i in range(4):
            enqueue(conn, receipt(f"R{i}", "+13125550111", key=f"r{i}"))
        enqueue(conn, receipt("Q", "+13125550122"))
        enqueue(conn, receipt("O", "+13125550133"))
    directory = StaticDirectory(by_account={
        **{f"R{i}": [person("+13125550111")] for i in range(4)},
        "Q": [person("+13125550122"), Recipient("email", "q@example.org")],
        "O": [person("+13125550133", opted_out=frozenset({"sms"}))]})
    clock = Clock(night)
    worker = Worker(engine, directory, {"sms": sms(twilio)}, NotifyConfig(rate_per_hour=2), clock=clock)
    asyncio.run(worker.run_once())
    assert twilio.delivered() == []                        # 22:00 local: SMS waits
    got = states(engine)
    assert got["+13125550122"] == ("pending", "quiet_hours", 0)
    assert got["+13125550133"] == ("skipped", "opted_out", 0)
    clock.t = datetime(2026, 3, 3, 14, 0, tzinfo=UTC).timestamp()   # 08:00 local
    asyncio.run(worker.run_once())
    assert len(twilio.delivered("+13125550111")) == 2      # the rate limit: two an hour
    assert len(twilio.delivered("+13125550122")) == 1
    clock.t += 3601
    asyncio.run(worker.run_once())
    assert len(twilio.delivered("+13125550111")) == 4
    engine.dispose()


def test_inbound_stop_help_start(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/n.sqlite3"
    migrate(url)
    engine = make_engine(url)
    reply = handle_inbound(engine, {"From": "+13125550144", "Body": "stop"}, service="AdvancePay",
                           help_number="1-800-555-0100")
    assert "unsubscribed" in reply
    from notify.outbox import is_opted_out
    with engine.connect() as conn:
        assert is_opted_out(conn, "sms", "+13125550144")
    help_reply = handle_inbound(engine, {"From": "+13125550144", "Body": "HELP"}, service="AdvancePay",
                                help_number="1-800-555-0100")
    assert "AdvancePay" in help_reply and "1-800-555-0100" in help_reply
    for word in ("STOPALL", "Unsubscribe", "CANCEL", "end", "QUIT"):
        handle_inbound(engine, {"From": "+13125550155", "Body": word}, service="A", help_number="1")
        with engine.begin() as conn:
            assert is_opted_out(conn, "sms", "+13125550155"), word
            from notify.outbox import set_opt_out
            set_opt_out(conn, "sms", "+13125550155", False, "test")
    handle_inbound(engine, {"From": "+13125550144", "Body": "START"}, service="A", help_number="1")
    with engine.connect() as conn:
        assert not is_opted_out(conn, "sms", "+13125550144")
    assert handle_inbound(engine, {"From": "+13125550166", "Body": "hello"}, service="A", help_number="1") \
        .endswith("<Response/>")
    engine.dispose()


def test_unfunded_attempt_once_per_window_never_privileged(sql_url: str, twilio: FakeTwilio) -> None:
    migrate(sql_url)
    engine = make_engine(sql_url)
    n = "+13125550177"
    assert unfunded_attempt(engine, "FAC-07", n, T0, hours=24, facility_name="Cook County Jail") is True
    assert unfunded_attempt(engine, "FAC-07", n, T0 + 3600, hours=24) is False
    assert unfunded_attempt(engine, "FAC-08", n, T0 + 3600, hours=24) is True
    assert unfunded_attempt(engine, "FAC-07", n, T0 + 25 * 3600, hours=24) is True
    assert unfunded_attempt(engine, "FAC-07", "+13125550188", T0, hours=24, privileged=True) is False
    assert unfunded_attempt(engine, "FAC-07", "+13125550188", T0, hours=24, facility_blocked=True) is False
    clock = Clock(T0 + 26 * 3600)
    worker = Worker(engine, StaticDirectory(), {"sms": sms(twilio)}, clock=clock)
    asyncio.run(worker.run_once())
    bodies = [m["body"] for m in twilio.delivered(n)]
    assert len(bodies) == 3 and "Cook County Jail" in bodies[0] and "fund" in bodies[0].lower()
    engine.dispose()


def test_generic_webhook_sends_its_idempotency_key(tmp_path: object) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: dict[str, dict[str, str]] = {}

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers["Idempotency-Key"]
            seen.setdefault(key, body)
            data = json.dumps({"id": f"wh-{key}"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"sqlite:///{tmp_path}/n.sqlite3"
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        enqueue(conn, receipt("W", "+13125550190"))
    hook = WebhookSMS(f"http://127.0.0.1:{httpd.server_address[1]}/sms", token="hook-secret")
    worker = Worker(engine, StaticDirectory(by_account={"W": [person("+13125550190")]}), {"sms": hook},
                    clock=Clock())
    asyncio.run(worker.run_once())
    httpd.shutdown()
    (key, body), = seen.items()
    assert body["to"] == "+13125550190" and body["id"] == key
    assert states(engine)["+13125550190"][0] == "sent"
    engine.dispose()
