"""Email over SMTP against a real SMTP server on loopback (aiosmtpd), and the en/es templates."""

from __future__ import annotations

import asyncio
import email
from email import policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from notify import Event, NotifyConfig, Recipient, StaticDirectory, Worker, enqueue
from notify.model import DEPOSIT_RECEIPT, KINDS
from notify.sql import make_engine, messages, migrate
from notify.templates import SAMPLE, render, segments
from notify.unsubscribe import verify
from tests.support.servers import free_port

SECRET = "unsubscribe-secret-0123456789"


class Inbox:
    def __init__(self) -> None:
        self.mail: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mail.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def test_smtp_delivery_parts_headers_and_error_classes(tmp_path: Path) -> None:
    from notify.mail import SMTPEmail

    inbox = Inbox()
    port = free_port()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    url = f"sqlite:///{tmp_path / 'n.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    people = {"ok": "holder@example.org", "busy": "busy@example.org", "nobody": "nobody@example.org"}
    with engine.begin() as conn:
        for key in people:
            enqueue(conn, Event(DEPOSIT_RECEIPT, f"dep-{key}", account_id=key, language="es",
                                payload={"amount_cents": 2500, "number": "+13125550101",
                                         "at_ms": 1_767_272_400_000}))
    always_quiet = {"quiet_start": 0, "quiet_end": 24 * 60 - 1}
    directory = StaticDirectory(by_account={
        k: [Recipient("email", a, language="es", time_zone="America/Chicago", **always_quiet)]
        for k, a in people.items()})
    channel = SMTPEmail("127.0.0.1", port, starttls=False, sender="AdvancePay <alerts@example.net>")
    config = NotifyConfig(unsubscribe_base="https://pay.example/unsubscribe", unsubscribe_secret=SECRET)
    worker = Worker(engine, directory, {"email": channel}, config)
    try:
        asyncio.run(worker.run_once())
        asyncio.run(worker.run_once())        # the 4xx is not due yet: nothing is sent twice
    finally:
        smtpd.stop()
    with engine.connect() as conn:
        got = {r.address: r for r in conn.execute(sa.select(messages))}
    assert got["holder@example.org"].state == "sent"           # email is not held by quiet hours
    assert (got["busy@example.org"].state, got["busy@example.org"].last_error) == ("pending", "smtp 451")
    assert got["busy@example.org"].next_attempt_ts > got["busy@example.org"].updated_ts
    assert (got["nobody@example.org"].state, got["nobody@example.org"].last_error) == ("failed", "smtp 550")
    (rcpts, raw), = inbox.mail
    assert rcpts == ["holder@example.org"]
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert mail["Message-ID"] == f"<{got['holder@example.org'].message_id}@advancepay.local>"
    assert mail["Subject"] == "Recibo de deposito"
    unsubscribe = mail["List-Unsubscribe"].strip("<>")
    signed = unsubscribe.split("t=", 1)[1].replace("%3D", "=")
    assert verify(SECRET, signed) == ("email", "holder@example.org")
    assert verify(SECRET, unsubscribe.split("t=", 1)[1][:-2] + "xx") is None
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "$25.00" in text and unsubscribe in text
    assert f'href="{unsubscribe}"' in html.replace("&amp;", "&")
    assert "01/01/2026 07:00" in text                 # the date in the recipient's zone, Spanish order
    engine.dispose()


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_within_two_sms_segments(kind: str, lang: str) -> None:
    text = render(kind, lang, SAMPLE, time_zone="America/Chicago", help_number="1-800-555-0100")
    assert (text.subject and "{" not in text.text and "$" in text.text) or kind in (
        "autoreload_off", "inactivity_150", "unfunded_attempt", "verification_code", "r2c_answered",
        "signin_locked")
    assert segments(text.text) <= 2, (len(text.text), text.text)


def test_money_comes_from_cents_and_dates_from_the_zone() -> None:
    text = render("deposit_receipt", "en", {"amount_cents": 123456, "at_ms": 1_767_272_400_000,
                                             "number": "+13125550101"}, time_zone="America/New_York")
    assert "$1,234.56" in text.text and "01/01/2026 8:00 AM" in text.text
    assert segments("x" * 160) == 1 and segments("x" * 161) == 2 and segments("á" * 71) == 2
