"""Inbound SMS keywords (framework-free): the web edge passes the provider's form fields and returns the
reply body. STOP and its synonyms opt the number out of SMS, START/UNSTOP opt it back in, HELP answers
with the service name and the 800 number. Replies are TwiML, which the generic webhook may ignore."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape

from sqlalchemy import Engine

from notify.outbox import set_opt_out

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO", "AYUDA"})


def twiml(text: str) -> str:
    if not text:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(text)}</Message></Response>'


def handle_inbound(engine: Engine, form: Mapping[str, str], *, service: str, help_number: str) -> str:
    """Act on one inbound message (Twilio's fields From and Body); returns the reply body."""
    number = (form.get("From") or "").strip()
    word = (form.get("Body") or "").strip().split(" ", 1)[0].upper().strip(".!")
    if not number.startswith("+"):
        return twiml("")
    if word in STOP_WORDS:
        with engine.begin() as conn:
            set_opt_out(conn, "sms", number, True, "sms_stop")
        return twiml(f"{service}: you are unsubscribed and will get no more texts. Reply START to resume.")
    if word in START_WORDS:
        with engine.begin() as conn:
            set_opt_out(conn, "sms", number, False, "sms_start")
        return twiml(f"{service}: you will get texts again. Reply STOP to stop.")
    if word in HELP_WORDS:
        return twiml(f"{service} prepaid calling alerts. Help: {help_number}. Reply STOP to stop.")
    return twiml("")
