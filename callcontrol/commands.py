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
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    _loop_policy()
    with runtime.redis_url(settings) as url:
        return asyncio.run(_serve(args, settings, url))


async def _serve(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    from callcontrol.controller import Controller

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
    from callcontrol.demo import run_demo

    _loop_policy()
    with runtime.redis_url(settings) as url:
        return asyncio.run(run_demo(settings, url, scale=args.scale))


# ---------------------------------------------------------------------------------------------------
# In-process stack: controller + simulated Asterisk on one shared clock (demo, end-to-end tests, bench)
# ---------------------------------------------------------------------------------------------------

# 10:00 on a Tuesday in Chicago: FAC-07's calling hours (07:00-23:00) are open for hours.
DEMO_START = 1795536000.0   # 2026-11-24T16:00:00Z


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """A controller and a simulated Asterisk (with its AMI server) wired together over real TCP."""

    def __init__(self, settings: Settings, redis_url: str, *, scale: float = 0.01,
                 start_at: float | None = DEMO_START, sql_url: str | None = None, run_sync: bool = True,
                 ami: bool = True, instance: str | None = None, names_dir: str | None = None,
                 sim_config: Any = None, clock: Any = None, agi_port: int | None = None) -> None:
        from callcontrol.clock import Clock

        self.settings = settings
        self.redis_url = redis_url
        self.clock = clock or Clock(scale, start=start_at)
        self.sql_url = sql_url
        self.run_sync = run_sync
        self.use_ami = ami
        self.instance = instance
        self.names_dir = names_dir
        self.sim_config = sim_config
        self.agi_port = agi_port or _free_port()
        self.sim: Any = None
        self.controller: Any = None

    async def start(self) -> Stack:
        from dataclasses import replace

        from callcontrol.controller import Controller
        from callcontrol.sim import SimConfig, Simulator

        config = self.sim_config or SimConfig(hangup_agi="hangup")
        self.sim = Simulator(("127.0.0.1", self.agi_port), clock=self.clock, config=config,
                             ami_port=0 if self.use_ami else None)
        await self.sim.start()
        settings = replace(self.settings, agi_bind=f"127.0.0.1:{self.agi_port}",
                           agi_allow=("127.0.0.1",))
        if self.use_ami:
            settings = replace(settings, ami_host="127.0.0.1", ami_port=self.sim.ami.port,
                               ami_user=config.ami_user, ami_secret=config.ami_secret)
        else:
            settings = replace(settings, ami_user="")
        self.controller = Controller(settings, redis_url=self.redis_url, clock=self.clock,
                                     sql_url=self.sql_url, run_sync=self.run_sync, instance=self.instance,
                                     names_dir=self.names_dir)
        await self.controller.start()
        return self

    async def stop(self) -> None:
        if self.controller is not None:
            await self.controller.stop()
        if self.sim is not None:
            await self.sim.stop()

    async def __aenter__(self) -> Stack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
