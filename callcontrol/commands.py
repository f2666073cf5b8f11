"""`callcontrol serve` (the production controller) and `callcontrol demo` (scripted calls end to end)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import structlog

from callcontrol import runtime
from callcontrol.config import Settings

log = structlog.get_logger("callcontrol.commands")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the call controller (FastAGI + AMI watchdog + sync)")
    serve.add_argument("--bind", help="FastAGI host:port (default: settings agi_bind)")
    serve.add_argument("--no-sync", action="store_true", help="do not run the SQL sync worker here")
    serve.add_argument("--instance", help="instance id (default: host-pid-random)")
    serve.set_defaults(func=serve_command)

    demo = subparsers.add_parser("demo", help="drive scripted calls through the simulator end to end")
    demo.add_argument("--scale", type=float, default=0.01,
                      help="simulated seconds per real second divisor (0.01: 100x faster)")
    demo.set_defaults(func=demo_command)


def _loop_policy() -> None:
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    _loop_policy()
    with runtime.redis_url(settings) as url:
        return asyncio.run(_serve(args, settings, url))


async def _serve(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    from callcontrol.controller import Controller  # noqa: PLC0415 - keeps `callcontrol --help` light

    controller = Controller(settings, redis_url=redis_url, agi_bind=getattr(args, "bind", None),
                            run_sync=not getattr(args, "no_sync", False),
                            instance=getattr(args, "instance", None))
    await controller.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"callcontrol: serving FastAGI on port {controller.agi_port} (instance {controller.instance})",
          flush=True)
    await stop.wait()
    log.info("controller_stopping")
    await controller.stop(grace=10.0)
    return 0


def demo_command(args: argparse.Namespace, settings: Settings) -> int:
    from callcontrol.demo import run_demo  # noqa: PLC0415

    _loop_policy()
    with runtime.redis_url(settings) as url:
        return asyncio.run(run_demo(settings, url, scale=args.scale))
