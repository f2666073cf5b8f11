"""The family's inbox in `callcontrol demo`: what the notify worker sends, caught on loopback by two tiny
servers the demo runs itself (the standard library only: aiosmtpd is a test dependency):

- an SMS provider of the generic webhook shape (notify/sms.py `WebhookSMS`): POST JSON {id, to, body}
  with an Idempotency-Key, answered 200 {"id": ...};
- an SMTP server (EHLO, MAIL, RCPT, DATA, QUIT; no STARTTLS on loopback) for notify/mail.py `SMTPEmail`.

Each keeps what arrived as (outbox message id, address, text) for the demo to print."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    message_id: str       # the outbox message id (the webhook's id; the email's Message-ID local part)
    channel: str          # sms | email
    address: str
    subject: str
    text: str


class Inbox:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None
        self._smtp: asyncio.Server | None = None
        self.sms_url = ""
        self.smtp_port = 0

    def _keep(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    async def start(self) -> Inbox:
        inbox = self

        class Webhook(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                inbox._keep(Received(str(body.get("id", "")), "sms", str(body.get("to", "")), "",
                                     str(body.get("body", ""))))
                data = json.dumps({"id": f"demo-{body.get('id', '')}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.sms_url = f"http://127.0.0.1:{self._http.server_address[1]}/sms"
        self._smtp = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.smtp_port = int(self._smtp.sockets[0].getsockname()[1])
        return self

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(line: str) -> None:
            writer.write(f"{line}\r\n".encode())
            await writer.drain()

        rcpt: list[str] = []
        try:
            await say("220 demo inbox")
            while line := (await reader.readline()).decode(errors="replace").strip():
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    await say("250 demo inbox")
                elif verb == "RCPT":
                    rcpt.append(line.split(":", 1)[1].strip().strip("<>"))
                    await say("250 OK")
                elif verb == "DATA":
                    await say("354 end with <CRLF>.<CRLF>")
                    lines: list[bytes] = []
                    while (chunk := await reader.readline()) not in (b".\r\n", b".\n", b""):
                        lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                    mail = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    part = mail.get_body(("plain",))
                    text = part.get_content() if part is not None else ""
                    mid = str(mail.get("Message-ID", "")).strip("<>").split("@", 1)[0]
                    for to in rcpt:
                        self._keep(Received(mid, "email", to, str(mail.get("Subject", "")),
                                            str(text).replace("\r\n", "\n").split("\n\n", 1)[0].strip()))
                    rcpt = []
                    await say("250 OK")
                elif verb == "QUIT":
                    await say("221 bye")
                    break
                else:                                   # MAIL, RSET, NOOP
                    await say("250 OK")
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
