"""The web app on a real uvicorn on a loopback port, over a real Redis and a real SQL database, with the
sandbox gateway and a phone that receives the one-time codes: what the API tests, the contract tests and
(later) the browser tests drive."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from argon2 import PasswordHasher

from payments.sandbox import SandboxGateway
from tests.support.servers import free_port
from web.app import create_app
from web.services import WebConfig

REPO = Path(__file__).resolve().parent.parent.parent
WEB_SECRET = "web-secret-for-tests-0123456789"
CODE_SECRET = "code-secret-for-tests-0123456789"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)   # argon2id, cheap for tests


class Phone:
    """A CodeSender that is the family's phone: it keeps what it received, by number."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        self.got.append((number, code))

    def last(self, number: str) -> str:
        return next(code for n, code in reversed(self.got) if n == number)


def config(redis_url: str, sql_url: str, phone: Phone, **over: object) -> WebConfig:
    values: dict[str, object] = dict(
        redis_url=redis_url, sql_url=sql_url, facility_dir=REPO / "facility_data", web_secret=WEB_SECRET,
        code_secret=CODE_SECRET, code_sender=phone, gateway=SandboxGateway(), gateway_name="sandbox",
        cookie_secure=False, hasher=FAST_HASHER)
    values.update(over)
    return WebConfig(**values)  # type: ignore[arg-type]


@contextmanager
def live_app(cfg: WebConfig) -> Iterator[str]:
    """Serve the app on 127.0.0.1:<free port> in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, lifespan="on",
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def sign_up(client: httpx.Client, email: str, password: str = "correct horse battery",
            mobile: str = "+13125550199") -> str:
    """Sign up and return a bearer token."""
    r = client.post("/api/v1/signup", json={"name": "Pat Doe", "email": email, "mobile": mobile,
                                            "password": password})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/tokens", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])
