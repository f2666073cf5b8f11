"""Email over SMTP with the standard library's smtplib, run in a thread (no aiosmtplib: one message per
call and a thread per send is plenty for receipts and alerts, and it is one dependency fewer).

Each message has a Message-ID derived from the outbox message id, the same on every attempt, so a resend
after an unknown outcome is recognisably the same mail; a List-Unsubscribe header (RFC 2369/8058) and a
link in both parts carry a signed token (notify/unsubscribe.py). SMTP replies: 4xx -> retry, 5xx ->
permanent; a connection lost after DATA -> unknown (resent with the same Message-ID).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

from notify.channels import FAILED, RETRY, SENT, UNKNOWN, Outcome, Outgoing


@dataclass
class SMTPEmail:
    host: str
    port: int = 587
    sender: str = "AdvancePay <alerts@localhost>"
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = True
    timeout: float = 20.0
    domain: str = "advancepay.local"        # the right-hand side of Message-IDs
    tls_context: ssl.SSLContext | None = field(default=None, repr=False)
    name: str = "email"

    def message_id(self, message_id: str) -> str:
        return f"<{message_id}@{self.domain}>"

    def build(self, msg: Outgoing) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = msg.address
        mail["Subject"] = msg.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = self.message_id(msg.message_id)
        if msg.unsubscribe_url:
            mail["List-Unsubscribe"] = f"<{msg.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(msg.text)
        if msg.html:
            mail.add_alternative(msg.html, subtype="html")
        return mail

    def _send(self, msg: Outgoing) -> Outcome:
        mail = self.build(msg)
        data_sent = False
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self.tls_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password)
                data_sent = True
                smtp.send_message(mail)
            return Outcome(SENT, provider_id=mail["Message-ID"])
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            return _by_code(code)
        except smtplib.SMTPResponseException as exc:     # sender refused, DATA refused, auth, STARTTLS
            return _by_code(exc.smtp_code)
        except (smtplib.SMTPServerDisconnected, TimeoutError, OSError) as exc:
            return Outcome(UNKNOWN if data_sent else RETRY, error=type(exc).__name__)

    async def send(self, msg: Outgoing) -> Outcome:
        return await asyncio.to_thread(self._send, msg)

    async def lookup(self, msg: Outgoing, exclude: set[str]) -> str | None:
        return None     # SMTP cannot tell; the stable Message-ID lets mail clients fold a duplicate


def _by_code(code: int) -> Outcome:
    return Outcome(RETRY if 400 <= code < 500 else FAILED, error=f"smtp {code}")
