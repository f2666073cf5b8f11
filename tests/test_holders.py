"""Account holders on real SQL (SQLite and PostgreSQL) and a real Redis ledger."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, inspect, select, text

import holders.codes
from callcontrol.platform.logs import configure_logging, redact_processor
from holders import (
    Actor,
    AlreadyClaimed,
    BadInput,
    CodeRefused,
    DevCodeSender,
    NotActive,
    NotFound,
    RateLimited,
    Registry,
    Unavailable,
)
from holders.ledgerport import BlockingLedger
from holders.sql import holder_codes, make_engine, migrate
from ledger import account_id_for

SECRET = "s3cret-key-for-tests-0123456789"
STAFF = Actor.support("tester")
FAC, NUM = "FAC-01", "+13125550100"


class Phone:
    """A CodeSender that is the family's phone: it remembers what it received."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, str, str]] = []

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        self.got.append((number, code, channel, language))

    @property
    def last(self) -> str:
        return self.got[-1][1]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    migrate(sql_url)
    eng = make_engine(sql_url)
    yield eng
    eng.dispose()


@pytest.fixture
def ledger(redis_url: str) -> Iterator[BlockingLedger]:
    led = BlockingLedger(redis_url)
    yield led
    led.close()


@pytest.fixture
def phone() -> Phone:
    return Phone()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(engine: Engine, ledger: BlockingLedger, phone: Phone, clock: Clock) -> Registry:
    return Registry(engine, secret=SECRET, sender=phone, ledger=ledger, clock=clock)


def pat(reg: Registry, email: str = "pat@example.com", mobile: str = "+13125550199") -> str:
    return reg.create(STAFF, name="Pat Doe", email=email, mobile=mobile, language="es",
                      time_zone="America/Chicago").holder_id


def rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(r) for t in ("holders", "holder_accounts", "holder_codes")
                for r in conn.execute(text(f"SELECT * FROM {t}"))]


# --- schema and profile ------------------------------------------------------------------------------
def head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from holders.sql import MIGRATIONS
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def test_own_alembic_chain_beside_the_ledger(sql_url: str) -> None:
    from ledger.sql import migrate as ledger_migrate
    ledger_migrate(sql_url)
    migrate(sql_url)
    migrate(sql_url)                      # again: nothing to do
    eng = make_engine(sql_url)
    try:
        names = set(inspect(eng).get_table_names())
        assert {"holders", "holder_accounts", "holder_codes", "holders_alembic_version",
                "ledger_alembic_version", "ledger_accounts"} <= names
        with eng.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM holders_alembic_version")).scalar() == head()
    finally:
        eng.dispose()


def test_create_read_update_and_email_ignores_case(reg: Registry, engine: Engine) -> None:
    hid = pat(reg)
    h = reg.get(STAFF, hid)
    assert (h.name, h.email, h.mobile, h.language, h.time_zone, h.status) == (
        "Pat Doe", "pat@example.com", "+13125550199", "es", "America/Chicago", "active")
    with pytest.raises(BadInput, match="email already in use"):
        pat(reg, email="PAT@Example.COM", mobile="+13125550198")
    assert reg.find_by_email(STAFF, "Pat@EXAMPLE.com") == h
    h2 = reg.update(Actor.holder(hid), hid, language="en", time_zone="America/New_York")
    assert (h2.language, h2.time_zone) == ("en", "America/New_York")
    assert reg.set_status(STAFF, hid, "locked").status == "locked"
    with pytest.raises(NotFound):
        reg.set_status(Actor.holder(hid), hid, "active")          # a holder cannot unlock itself


@pytest.mark.parametrize("field,value", [
    ("name", ""), ("name", "Pat\x00"), ("email", "pat.example.com"), ("email", "pat@"),
    ("mobile", "3125550100"), ("mobile", "+15555550100"), ("language", "fr"),
    ("time_zone", "Mars/Olympus"), ("time_zone", "../../etc/passwd"),
])
def test_bad_profile_is_refused_and_changes_nothing(reg: Registry, engine: Engine, field: str,
                                                     value: str) -> None:
    hid = pat(reg)
    before = rows(engine)
    fields: dict[str, Any] = {"name": "Kim", "email": "kim@example.com", "mobile": "+13125550190",
                              "language": "en", "time_zone": "America/Chicago", field: value}
    with pytest.raises(BadInput):
        reg.create(STAFF, **fields)
    with pytest.raises(BadInput):
        reg.update(STAFF, hid, **{field: value})
    assert rows(engine) == before


# --- claiming -------------------------------------------------------------------------------------
def test_claim_and_verify_links_an_account_the_800_line_opened(reg: Registry, ledger: BlockingLedger,
                                                                phone: Phone) -> None:
    account = ledger.open_account("dep-1:open", FAC, NUM)
    hid = pat(reg)
    assert not reg.verified(STAFF, hid, account)
    reg.claim(STAFF, hid, FAC, NUM, "call")
    assert phone.got == [(NUM, phone.last, "call", "es")]
    assert len(phone.last) == 6 and phone.last.isdigit()
    link = reg.verify(Actor.holder(hid), hid, FAC, NUM, phone.last)
    assert (link.account_id, link.holder_id) == (account, hid)
    assert reg.verified(STAFF, hid, account)
    assert [a.account_id for a in reg.accounts(STAFF, hid)] == [account]
    with pytest.raises(BadInput, match="already verified"):
        reg.verify(STAFF, hid, FAC, NUM, phone.last)          # single use, and nothing to re-link


def test_claiming_an_account_that_does_not_exist_opens_it(reg: Registry, ledger: BlockingLedger,
                                                          phone: Phone) -> None:
    hid = pat(reg)
    assert ledger.find_account(FAC, NUM) is None
    reg.claim(STAFF, hid, FAC, NUM)
    reg.verify(STAFF, hid, FAC, NUM, phone.last)
    assert ledger.find_account(FAC, NUM) == account_id_for(FAC, NUM)
    assert ledger.balance(account_id_for(FAC, NUM)).state == "opened"


def test_code_expires_after_ten_minutes(reg: Registry, phone: Phone, clock: Clock) -> None:
    hid = pat(reg)
    reg.claim(STAFF, hid, FAC, NUM)
    clock.t += 600
    with pytest.raises(CodeRefused, match="expired"):
        reg.verify(STAFF, hid, FAC, NUM, phone.last)
    with pytest.raises(CodeRefused, match="no code pending"):
        reg.verify(STAFF, hid, FAC, NUM, phone.last)
    assert not reg.verified(STAFF, hid, account_id_for(FAC, NUM))


def test_five_wrong_codes_lock_the_code(reg: Registry, phone: Phone) -> None:
    hid = pat(reg)
    reg.claim(STAFF, hid, FAC, NUM)
    wrong = f"{(int(phone.last) + 1) % 10**6:06d}"
    for _ in range(5):
        with pytest.raises(CodeRefused, match="wrong code"):
            reg.verify(STAFF, hid, FAC, NUM, wrong)
    with pytest.raises(CodeRefused, match="no code pending"):
        reg.verify(STAFF, hid, FAC, NUM, phone.last)          # the right code, too late
    reg.claim(STAFF, hid, FAC, NUM)                           # a new code works
    reg.verify(STAFF, hid, FAC, NUM, phone.last)


def test_a_new_code_replaces_the_old_one(reg: Registry, phone: Phone) -> None:
    hid = pat(reg)
    reg.claim(STAFF, hid, FAC, NUM)
    old = phone.last
    reg.claim(STAFF, hid, FAC, NUM)
    if old != phone.last:
        with pytest.raises(CodeRefused):
            reg.verify(STAFF, hid, FAC, NUM, old)
    reg.verify(STAFF, hid, FAC, NUM, phone.last)


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", "١٢٣٤٥٦", ""])
def test_malformed_code_is_bad_input_and_uses_no_attempt(reg: Registry, engine: Engine, code: str) -> None:
    hid = pat(reg)
    reg.claim(STAFF, hid, FAC, NUM)
    with pytest.raises(BadInput):
        reg.verify(STAFF, hid, FAC, NUM, code)
    with engine.connect() as conn:
        assert conn.execute(select(holder_codes.c.attempts)).scalar() == 0


def test_three_codes_per_number_per_hour(reg: Registry, clock: Clock) -> None:
    a, b = pat(reg), pat(reg, "kim@example.com", "+13125550198")
    reg.claim(STAFF, a, FAC, NUM)
    reg.claim(STAFF, b, FAC, NUM)
    reg.claim(STAFF, a, "FAC-02", NUM)
    with pytest.raises(RateLimited, match="per number per hour"):
        reg.claim(STAFF, b, "FAC-03", NUM)
    clock.t += 3601
    reg.claim(STAFF, b, "FAC-03", NUM)


def test_ten_codes_per_holder_per_day(reg: Registry, clock: Clock) -> None:
    hid = pat(reg)
    for i in range(10):
        reg.claim(STAFF, hid, FAC, f"+1312555{110 + i:04d}")
        clock.t += 60
    with pytest.raises(RateLimited, match="per holder per day"):
        reg.claim(STAFF, hid, FAC, "+13125550150")
    clock.t += 86_400
    reg.claim(STAFF, hid, FAC, "+13125550150")


def test_codes_are_compared_in_constant_time(reg: Registry, phone: Phone,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    real = holders.codes.compare_digest

    def spy(a: str, b: str) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(holders.codes, "compare_digest", spy)
    hid = pat(reg)
    reg.claim(STAFF, hid, FAC, NUM)
    with pytest.raises(CodeRefused):
        reg.verify(STAFF, hid, FAC, NUM, f"{(int(phone.last) + 1) % 10**6:06d}")
    reg.verify(STAFF, hid, FAC, NUM, phone.last)
    assert len(seen) == 2 and all(len(a) == len(b) == 64 for a, b in seen)


def test_two_holders_racing_for_one_number_exactly_one_wins(engine: Engine, redis_url: str,
                                                            phone: Phone, clock: Clock) -> None:
    setup = Registry(engine, secret=SECRET, sender=phone, ledger=None, clock=clock)
    ids = [pat(setup), pat(setup, "kim@example.com", "+13125550198")]
    sent = []
    for hid in ids:
        setup.claim(STAFF, hid, FAC, NUM)
        sent.append(phone.last)
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def run(i: int) -> None:
        led = BlockingLedger(redis_url)
        try:
            reg = Registry(engine, secret=SECRET, sender=phone, ledger=led, clock=clock)
            barrier.wait()
            try:
                results[i] = reg.verify(Actor.holder(ids[i]), ids[i], FAC, NUM, sent[i])
            except Exception as exc:
                results[i] = exc
        finally:
            led.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["AlreadyClaimed", "Link"], results
    winner = ids[[type(r).__name__ for r in results].index("Link")]
    loser = ids[1 - ids.index(winner)]
    account = account_id_for(FAC, NUM)
    assert setup.verified(STAFF, winner, account) and not setup.verified(STAFF, loser, account)
    with pytest.raises(AlreadyClaimed, match="another holder"):
        setup.claim(STAFF, loser, FAC, NUM)


def test_a_holder_never_reads_or_changes_another_holders_data(reg: Registry, phone: Phone) -> None:
    a, b = pat(reg), pat(reg, "kim@example.com", "+13125550198")
    reg.claim(STAFF, a, FAC, NUM)
    reg.verify(STAFF, a, FAC, NUM, phone.last)
    as_b = Actor.holder(b)
    account = account_id_for(FAC, NUM)
    attempts = [lambda: reg.get(as_b, a), lambda: reg.accounts(as_b, a), lambda: reg.balances(as_b, a),
                lambda: reg.history(as_b, a), lambda: reg.verified(as_b, a, account),
                lambda: reg.update(as_b, a, name="Mallory"),
                lambda: reg.claim(as_b, a, FAC, "+13125550111"),
                lambda: reg.verify(as_b, a, FAC, NUM, "000000"),
                lambda: reg.find_by_email(as_b, "pat@example.com"),
                lambda: reg.find_by_number(as_b, NUM), lambda: reg.set_status(as_b, a, "closed")]
    for attempt in attempts:
        with pytest.raises(NotFound):
            attempt()
    assert reg.get(STAFF, a).name == "Pat Doe"
    assert not reg.verified(as_b, b, account)              # b asking about itself: not b's account


def test_a_locked_holder_cannot_claim(reg: Registry, phone: Phone) -> None:
    hid = pat(reg)
    reg.set_status(STAFF, hid, "locked")
    with pytest.raises(NotActive):
        reg.claim(STAFF, hid, FAC, NUM)
    assert phone.got == []


def test_fail_closed_without_secret_or_sender_or_ledger(engine: Engine, phone: Phone, clock: Clock) -> None:
    hid = pat(Registry(engine, secret=SECRET, sender=phone, ledger=None, clock=clock))
    with pytest.raises(Unavailable, match="holder_code_secret"):
        Registry(engine, secret="", sender=phone, ledger=None).claim(STAFF, hid, FAC, NUM)
    with pytest.raises(Unavailable, match="no code sender"):
        Registry(engine, secret=SECRET, sender=None, ledger=None).claim(STAFF, hid, FAC, NUM)
    no_ledger = Registry(engine, secret=SECRET, sender=phone, ledger=None, clock=clock)
    no_ledger.claim(STAFF, hid, FAC, NUM)
    with pytest.raises(Unavailable, match="ledger"):
        no_ledger.verify(STAFF, hid, FAC, NUM, phone.last)
    assert not no_ledger.verified(STAFF, hid, account_id_for(FAC, NUM))


def test_undelivered_code_is_never_usable(reg: Registry, engine: Engine, clock: Clock) -> None:
    class Down:
        code = ""

        def deliver(self, number: str, code: str, channel: str, language: str) -> None:
            self.code = code
            raise ConnectionError("sms gateway down")

    down = Down()
    hid = pat(reg)
    broken = Registry(engine, secret=SECRET, sender=down, ledger=None, clock=clock)
    with pytest.raises(Unavailable):
        broken.claim(STAFF, hid, FAC, NUM)
    with pytest.raises(CodeRefused, match="no code pending"):
        reg.verify(STAFF, hid, FAC, NUM, down.code)


# --- secrets -------------------------------------------------------------------------------------
@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    yield out
    configure_logging("json", "info")


def test_no_code_or_secret_reaches_a_log_or_sql(reg: Registry, engine: Engine, phone: Phone,
                                                log_text: io.StringIO) -> None:
    hid = pat(reg)
    reg.claim(STAFF, hid, FAC, NUM)
    first = phone.last
    wrong = f"{(int(first) + 1) % 10**6:06d}"
    with pytest.raises(CodeRefused):
        reg.verify(STAFF, hid, FAC, NUM, wrong)
    reg.claim(STAFF, hid, FAC, NUM)
    reg.verify(STAFF, hid, FAC, NUM, phone.last)
    stored = "\n".join(rows(engine))
    logged = log_text.getvalue()
    assert "holder_code_sent" in logged and "holder_account_verified" in logged
    for clear in (first, phone.last, wrong, SECRET):
        assert clear not in stored
        assert clear not in logged


def test_dev_sender_logs_the_code_only_as_dev_code(log_text: io.StringIO) -> None:
    DevCodeSender().deliver(NUM, "482913", "sms", "en")
    structlog.get_logger().info("other", code="482913", otp="482913", verification_code="482913",
                                dev_code="482913", status_code=502, nested={"code": "482913"})
    lines = [json.loads(x) for x in log_text.getvalue().splitlines()]
    assert lines[0]["event"] == "dev_code" and lines[0]["dev_code"] == "482913"
    assert "482913" not in json.dumps(lines[1]) and lines[1]["status_code"] == 502


def test_redactor_masks_code_and_otp_keys() -> None:
    out = redact_processor(None, "info", {"event": "x", "code": "123456", "otp": "12", "sms_otp": "1",
                                          "error_code": "bad_id", "status_code": 200})
    assert out == {"event": "x", "code": "***", "otp": "***", "sms_otp": "***", "error_code": "bad_id",
                   "status_code": 200}
