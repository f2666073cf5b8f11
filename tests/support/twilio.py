"""A local stand-in for Twilio's Programmable Messaging API on loopback, speaking its documented format:
POST /2010-04-01/Accounts/{sid}/Messages.json (form To/From/Body, basic auth) -> 201 JSON {sid, status...};
errors as {code, message, more_info, status}; GET the same path lists {messages: [...]} filtered by To.

Numbers script the replies: +15550000400 400 (21211), +15550021610 400 (21610, opted out), +15550000429 one
429 then success, +15550000500 one 500 then success, +15550000408 accepts the first send but answers too
late (the client times out). `pause_at=N` holds the Nth accepted send before replying until `release`."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeTwilio:
    def __init__(self, account_sid: str = "AC" + "0" * 32, token: str = "tok-secret") -> None:
        self.account_sid = account_sid
        self.token = token
        self.messages: list[dict[str, Any]] = []     # accepted sends (each one delivery)
        self.requests: list[tuple[str, str]] = []    # (method, To)
        self.lock = threading.Lock()
        self.slow_seconds = 2.0
        self.pause_at = 0
        self.paused = threading.Event()
        self.release = threading.Event()
        self._failed_once: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                want = base64.b64encode(f"{server.account_sid}:{server.token}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {want}":
                    self._reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return False
                path = urlparse(self.path).path
                if path != f"/2010-04-01/Accounts/{server.account_sid}/Messages.json":
                    self._reply(404, {"code": 20404, "message": "not found", "status": 404})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                query = parse_qs(urlparse(self.path).query)
                to = query.get("To", [""])[0]
                with server.lock:
                    server.requests.append(("GET", to))
                    found = [m for m in server.messages if not to or m["to"] == to]
                self._reply(200, {"messages": list(reversed(found)), "page": 0, "next_page_uri": None})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                length = int(self.headers["Content-Length"])
                raw = self.rfile.read(length)
                if len(raw) < length:       # the client went away mid-request (killed): nothing was sent
                    self.close_connection = True
                    return
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                to = form.get("To", "")
                if not to:
                    self._reply(400, {"code": 21604, "message": "A 'To' phone number is required.",
                                      "status": 400})
                    return
                with server.lock:
                    server.requests.append(("POST", to))
                    first = to not in server._failed_once
                    server._failed_once.add(to)
                if to == "+15550000400":
                    self._reply(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
                    return
                if to == "+15550021610":
                    self._reply(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                                      "status": 400})
                    return
                if to in ("+15550000429", "+15550000500") and first:
                    status = int(to[-3:])
                    self._reply(status, {"code": 20429 if status == 429 else 20500, "message": "busy",
                                         "status": status})
                    return
                message = {"sid": "SM" + secrets.token_hex(16), "to": to, "from": form.get("From", ""),
                           "body": form.get("Body", ""), "status": "queued",
                           "date_created": formatdate(usegmt=True), "account_sid": server.account_sid,
                           "messaging_service_sid": form.get("MessagingServiceSid")}
                with server.lock:
                    server.messages.append(message)
                    count = len(server.messages)
                if to == "+15550000408" and first:
                    time.sleep(server.slow_seconds)
                if server.pause_at and count == server.pause_at:
                    server.paused.set()
                    server.release.wait(30)
                self._reply(201, message)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> FakeTwilio:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def delivered(self, to: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if to is None or m["to"] == to]
