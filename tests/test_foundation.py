"""Settings, log redaction and the embedded redis-server: the pieces every other part stands on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import redis
import structlog

from callcontrol.platform.config import Settings, load_settings
from callcontrol.platform.logs import configure_logging, luhn_ok, redact_text
from callcontrol.platform.redis_server import EmbeddedRedis

VISA_TEST = "4111111111111111"  # Luhn-valid test card number


def test_settings_precedence_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cc.toml"
    cfg.write_text('redis_url = "redis://file:6379/0"\nagi_allow = ["10.0.0.5"]\nring_timeout = 20\n')
    s = load_settings({"CALLCONTROL_RING_TIMEOUT": "45"}, cfg)
    assert s.redis_url == "redis://file:6379/0"
    assert s.agi_allow == ("10.0.0.5",)
    assert s.ring_timeout == 45


def test_settings_unknown_key_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "cc.toml"
    cfg.write_text('reddis_url = "x"\n')
    with pytest.raises(ValueError, match="reddis_url"):
        load_settings({}, cfg)


def test_default_database_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    s = load_settings({"CALLCONTROL_DATA_DIR": str(tmp_path)})
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert "secret" not in repr(Settings(ami_secret="hunter2")).replace("ami_secret", "")


def test_luhn() -> None:
    assert luhn_ok(VISA_TEST)
    assert not luhn_ok("4111111111111112")


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        (f"card {VISA_TEST} declined", VISA_TEST),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
        ("pin=4455 accepted", "4455"),
        ("cvv: 123", "123"),
        ("secret=ctlsecret", "ctlsecret"),
    ],
)
def test_redact_text_masks(text: str, leaked: str) -> None:
    assert leaked not in redact_text(text)


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        ("card 4111 1111 1111 1111 declined", ["1111"]),  # spaced after a keyword: the whole number
        ("reply 41111111111111110823", ["4111", "0823"]),  # run together with its expiry
        ("typed 4111111111111112", ["4111"]),              # a mistyped card number is still one
        ("exp 1230 and expiry=0827", ["1230", "0827"]),
    ],
)
def test_redact_text_leaves_no_card_digits(text: str, secrets: list[str]) -> None:
    out = redact_text(text)
    assert not [s for s in secrets if s in out], out


def test_sensitive_keys_mask_every_leaf_and_spare_ordinary_words() -> None:
    from callcontrol.platform.logs import redact_processor

    out = redact_processor(None, "info", {
        "event": "x", "cvv": ["739"], "pin": {"value": "2468"}, "card_expiry": "1230",
        "line": b"4111111111111111", "company": "Acme", "mapping": "ok", "discard": "no",
    })
    assert out["cvv"] == ["***"] and out["pin"] == {"value": "***"} and out["card_expiry"] == "***"
    assert out["line"] == "***"
    assert (out["company"], out["mapping"], out["discard"]) == ("Acme", "ok", "no")


def test_redact_text_keeps_ordinary_numbers() -> None:
    # a phone number and a Luhn-invalid long run are not card numbers
    text = "dialled +13128681234 amount 1234567890123"
    assert redact_text(text) == text


def _capture(fmt: str) -> tuple[structlog.typing.FilteringBoundLogger, io.StringIO]:
    out = io.StringIO()
    configure_logging(fmt, "debug", stream=out)
    return structlog.get_logger(), out


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logs_never_show_secrets(fmt: str) -> None:
    log, out = _capture(fmt)
    log.info("deposit", card_number=VISA_TEST, cvv="987", pin="4455", note=f"paid with {VISA_TEST}",
             nested={"secret": "ctlsecret", "ok": "visible"})
    text = out.getvalue()
    for leaked in (VISA_TEST, "987", "4455", "ctlsecret"):
        assert leaked not in text
    assert "visible" in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_are_redacted_and_have_no_locals(fmt: str) -> None:
    log, out = _capture(fmt)
    pin = "8642"  # a local variable that must not appear
    try:
        raise ValueError(f"payment failed for card {VISA_TEST} pin={pin}")
    except ValueError:
        log.exception("payment_error")
    text = out.getvalue()
    assert "payment_error" in text and "ValueError" in text
    assert VISA_TEST not in text
    assert "8642" not in text
    if fmt == "json":
        record = json.loads(text.strip().splitlines()[-1])
        assert record["exception"]


def test_embedded_redis_survives_kill_9_from_its_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    try:
        client = redis.Redis.from_url(server.url)
        for _i in range(200):
            client.incrby("counter", 1)
        client.close()
        server.kill()
        server.start()
        client = redis.Redis.from_url(server.url)
        assert int(client.get("counter")) == 200
        client.close()
    finally:
        server.stop()


def test_logging_follows_a_replaced_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("json", "info")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    structlog.get_logger().info("one")
    first.close()  # a stream closed behind the logger's back (as pytest's capture does)
    monkeypatch.setattr("sys.stderr", second)
    structlog.get_logger().info("two")
    assert '"two"' in second.getvalue()


def test_raise_fd_limit_lifts_a_low_soft_limit_to_the_hard_one() -> None:
    # In a child process: a controller started under a distribution's soft default of 1,024 must not
    # stop accepting calls at a thousand when the operator's hard limit allows more.
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from callcontrol.platform.runtime import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(64, hard), hard))\n"
        "got = raise_fd_limit()\n"
        "print(got, hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    got, hard, now = (int(x) for x in out.split())
    assert got == hard == now


def test_tune_gc_freezes_the_start_up_heap_and_raises_the_young_threshold() -> None:
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from callcontrol.platform.runtime import tune_gc\n"
        "before = gc.get_threshold()\n"
        "tune_gc(12345)\n"
        "print(gc.get_freeze_count(), *gc.get_threshold(), *before[1:])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    frozen, young, middle, old, middle0, old0 = (int(x) for x in out.split())
    assert frozen > 1000 and young == 12345 and (middle, old) == (middle0, old0)


def test_max_amount_beyond_exact_integer_money_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="max_amount"):
        load_settings(env={"CALLCONTROL_MAX_AMOUNT": str(10**17)})
    assert load_settings(env={"CALLCONTROL_MAX_AMOUNT": "250000"}).max_amount == 250_000
