"""`callcontrol web`: serve the API with uvicorn. Registered by callcontrol/cli.py, which hands in what
only the host has (its Redis); web never imports callcontrol."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from holders.sender import sender_for
from payments.authorizenet import AuthorizeNetGateway
from payments.gateway import PaymentGateway
from payments.sandbox import SandboxGateway
from web.services import WebConfig


class Settings(Protocol):
    """What `callcontrol web` reads from the host's settings."""

    @property
    def redis_url(self) -> str: ...
    @property
    def sqlalchemy_url(self) -> str: ...
    @property
    def facility_dir(self) -> Path: ...
    @property
    def ledger_partitions(self) -> int: ...
    @property
    def max_amount(self) -> int: ...
    @property
    def holder_code_secret(self) -> str: ...
    @property
    def holder_code_sender(self) -> str: ...
    @property
    def payment_gateway(self) -> str: ...
    @property
    def authorizenet_login_id(self) -> str: ...
    @property
    def authorizenet_transaction_key(self) -> str: ...
    @property
    def authorizenet_url(self) -> str: ...
    @property
    def authorizenet_timeout(self) -> int: ...
    @property
    def deposit_max_cents(self) -> int: ...
    @property
    def call_request_days(self) -> int: ...
    @property
    def web_bind(self) -> str: ...
    @property
    def web_secret(self) -> str: ...
    @property
    def web_base_url(self) -> str: ...


OpenRedis = Callable[[Any], AbstractContextManager[str]]


def gateway_for(settings: Settings) -> PaymentGateway | None:
    """Same choice as the 800 line: sandbox (development), Authorize.Net, or none (deposits refused)."""
    if settings.payment_gateway == "sandbox":
        return SandboxGateway()
    if settings.payment_gateway == "authorizenet":
        return AuthorizeNetGateway(settings.authorizenet_login_id, settings.authorizenet_transaction_key,
                                   url=settings.authorizenet_url,
                                   timeout=float(settings.authorizenet_timeout))
    return None


def config_from(settings: Settings, redis_url: str) -> WebConfig:
    return WebConfig(
        redis_url=redis_url, sql_url=settings.sqlalchemy_url, facility_dir=Path(settings.facility_dir),
        web_secret=settings.web_secret, code_secret=settings.holder_code_secret,
        code_sender=sender_for(settings.holder_code_sender, settings), gateway=gateway_for(settings),
        gateway_name=settings.payment_gateway, partitions=settings.ledger_partitions,
        max_amount=settings.max_amount, deposit_max_cents=settings.deposit_max_cents,
        cookie_secure=not settings.web_base_url.startswith("http://"),
        call_request_days=settings.call_request_days)


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"web_bind: expected host:port, got {bind!r}")
    return host.strip("[]"), int(port)


def register(subparsers: Any, *, open_redis: OpenRedis | None = None) -> None:
    cmd = subparsers.add_parser("web", help="serve the family's web API (uvicorn)")
    cmd.add_argument("--bind", help="host:port (default: the web_bind setting)")
    cmd.set_defaults(func=lambda args, settings: serve(args, settings, open_redis))


def serve(args: argparse.Namespace, settings: Settings, open_redis: OpenRedis | None) -> int:
    import uvicorn

    from web.app import create_app
    if len(settings.web_secret.encode()) < 16:
        print("callcontrol web: set web_secret (at least 16 bytes) first")
        return 2
    host, port = split_bind(args.bind or settings.web_bind)
    opener = open_redis or (lambda s: nullcontext(s.redis_url))
    with opener(settings) as redis_url:
        app = create_app(config_from(settings, redis_url))
        print(f"AdvancePay web API on {settings.web_base_url or f'http://{host}:{port}'}/docs")
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                    proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    return 0
