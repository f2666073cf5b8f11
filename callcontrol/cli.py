"""`callcontrol` console command. Each package registers its own subcommands.

Handlers take (args, settings) and return a process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from callcontrol.platform.config import load_settings
from callcontrol.platform.logs import configure_logging
from callcontrol.platform.runtime import redis_url


def _holder_gateway(settings: Any) -> Any:
    """Refunds' card processor, imported only when a refund runs."""
    from callcontrol.holder_notices import gateway
    return gateway(settings)


def _holder_notices(engine: Any) -> Any:
    from callcontrol.holder_notices import OutboxNotices
    return OutboxNotices(engine)


async def _alert_originator(settings: Any) -> Any:
    """notify's call channel: AMI Originate into [apc-alerts] (callcontrol/alert_calls.py)."""
    from callcontrol.alert_calls import originator_from_settings
    return await originator_from_settings(settings)


def _web_app(**config: Any) -> Any:
    """The family's web app for `callcontrol demo`, by name: callcontrol never imports web."""
    services = importlib.import_module("web.services")
    return importlib.import_module("web.app").create_app(services.WebConfig(**config))


# Modules exposing register(subparsers, **wiring); a module that is not there yet is skipped. The
# libraries know nothing of callcontrol: what they need from it (the embedded Redis) is handed in here.
COMMAND_MODULES: dict[str, dict[str, Any]] = {
    "ledger.cli": {"open_redis": redis_url},
    "holders.cli": {"open_redis": redis_url, "gateway": _holder_gateway, "notices": _holder_notices},
    "notify.cli": {"originator": _alert_originator},
    "payments.cli": {"open_redis": redis_url},
    "rating.cli": {},
    "callcontrol.commands": {"web_app": _web_app},
    "callcontrol.roster.cli": {},
    "web.cli": {"open_redis": redis_url},   # the web edge, by name: callcontrol never imports web
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcontrol", description="AdvancePay call control")
    parser.add_argument("--config", help="TOML settings file (else CALLCONTROL_CONFIG / environment)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, wiring in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub, **wiring)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings(path=args.config)
    except (OSError, ValueError) as exc:
        print(f"callcontrol: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
