"""FastAGI soak: thousands of silent sessions, then a real call.

A child process (loopback only) opens up to 20,000 FastAGI connections to a running controller (or as
many as the descriptor limit allows), sends each a valid inmate-call env block and then never replies.
Every one of those sessions waits on its first command's deadline (agi_reply_timeout, short here). The
figures: sessions opened, how long until the controller has reclaimed them all, descriptors and RSS
before and after, and a real call's set-up (env block to EXEC Dial) before the soak and after reclaim.
SOAK_SESSIONS sets the count, SOAK_REPLY_TIMEOUT the deadline in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.dial_timing import time_dial
from callcontrol.platform.runtime import raise_fd_limit

FAC = "FAC-07"
PIN = "10422468"
NUMBER = "+13125551234"
ENV = (b"agi_network: yes\nagi_network_script: inmate-call?facility=FAC-07\n"
       b"agi_request: agi://127.0.0.1/inmate-call?facility=FAC-07\nagi_channel: Local/0701@soak-%d;2\n"
       b"agi_uniqueid: soak.%d\nagi_callerid: 0701\n\n")
LIMIT_SECONDS = 300.0          # the whole soak gives up after this


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------------------------ silent peers

def _peers_main(conn: Any, port: int, n: int) -> None:
    raise_fd_limit()
    asyncio.run(_peers(conn, port, n))


async def _peers(conn: Any, port: int, n: int) -> None:
    """Open n sessions that send their env block and then say nothing; report when all are open and
    when the controller has closed them all."""
    writers: list[asyncio.StreamWriter] = []
    closed = 0
    all_closed = asyncio.Event()
    gate = asyncio.Semaphore(500)

    async def one(k: int) -> None:
        nonlocal closed
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(ENV % (k, k))
            await writer.drain()
            writers.append(writer)
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(4096):          # the commands we never answer
                pass
        writer.close()
        closed += 1
        if closed == n:
            all_closed.set()

    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(k)) for k in range(n)]
    while len(writers) < n and not any(t.done() and t.exception() for t in tasks):
        await asyncio.sleep(0.05)
    failed = [t.exception() for t in tasks if t.done() and t.exception()]
    conn.send({"opened": len(writers), "open_seconds": time.monotonic() - t0,
               "error": repr(failed[0]) if failed else None})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_closed.wait(), LIMIT_SECONDS)
    conn.send({"closed_by_server": closed})
    for t in tasks:
        t.cancel()


# ------------------------------------------------------------------------------------------ soak

async def _real_call(stack: Any, setups: list[float]) -> float:
    from callcontrol.sim import Handset, Recipient, Record

    before = len(setups)
    result = await stack.sim.place_call(FAC, "0701", extension="0701",
                                        handset=Handset(actions=["1", PIN, NUMBER[2:], Record("#")]),
                                        recipient=[Recipient(NUMBER, keys="1", talk=30)])
    assert result.last_dial is not None and result.last_dial.status == "ANSWER", result
    assert len(setups) > before
    return setups[-1]


async def _soak(redis_url: str, tmp: Path, n: int, reply_timeout: int) -> None:
    from callcontrol.commands import DEMO_START, Stack
    from callcontrol.platform.config import REPO_ROOT, load_settings
    from ledger import Ledger

    settings = replace(load_settings(env={}), data_dir=tmp, facility_dir=REPO_ROOT / "facility_data",
                       agi_reply_timeout=reply_timeout)
    stack = Stack(settings, redis_url, scale=0.005, start_at=DEMO_START, run_sync=False,
                  sql_url=f"sqlite:///{tmp / 'ledger.sqlite3'}", names_dir=str(tmp / "names"))
    await stack.start()
    ctl = stack.controller
    setups: list[float] = []
    ctl.agi.routes["inmate-call"] = time_dial(ctl.agi.routes["inmate-call"], setups.append)
    ledger = await Ledger.connect(redis_url)
    try:
        account = await ledger.open_account("soak-open", FAC, NUMBER, owner="bench")
        await ledger.deposit("soak-dep", account, 50_000)
        first = await _real_call(stack, setups)
        await asyncio.sleep(0.5)
        idle_fds, idle_rss = _fds(), _rss_mib()
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(target=_peers_main, args=(child, ctl.agi_port, n), daemon=True)
        proc.start()
        opened = await asyncio.to_thread(parent.recv)
        t_open = time.monotonic()
        peak_sessions, peak_fds, peak_rss = ctl.agi.active_sessions, _fds(), _rss_mib()
        while time.monotonic() - t_open < LIMIT_SECONDS:
            peak_sessions = max(peak_sessions, ctl.agi.active_sessions)
            peak_fds, peak_rss = max(peak_fds, _fds()), max(peak_rss, _rss_mib())
            if ctl.agi.active_sessions == 0 and _fds() <= idle_fds + 5:
                break
            await asyncio.sleep(0.05)
        reclaim = time.monotonic() - t_open
        closed = await asyncio.to_thread(parent.recv)
        proc.join(10)
        after_fds, after_rss = _fds(), _rss_mib()
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):    # hand freed arenas back to the OS
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed_rss = _rss_mib()
        t0 = time.monotonic()
        second = await _real_call(stack, setups)
        call_wall = time.monotonic() - t0
    finally:
        await ledger.close()
        await stack.stop()
    print(f"  silent sessions opened:      {opened['opened']} of {n} in {opened['open_seconds']:.1f} s"
          + (f" (first error {opened['error']})" if opened["error"] else ""))
    print(f"  command deadline:            agi_reply_timeout={reply_timeout} s")
    print(f"  most sessions held at once:  {peak_sessions}")
    print(f"  reclaimed all in:            {reclaim:.1f} s after the last one opened; "
          f"{closed['closed_by_server']} closed by the controller")
    print(f"  descriptors idle/peak/after: {idle_fds} / {peak_fds} / {after_fds}")
    print(f"  RSS MiB idle/peak/after:     {idle_rss:.0f} / {peak_rss:.0f} / {after_rss:.0f} "
          f"({trimmed_rss:.0f} after gc + malloc_trim)")
    print(f"  real call set-up (env->Dial): {first * 1000:.1f} ms before, "
          f"{second * 1000:.1f} ms after reclaim (whole call {call_wall:.2f} s wall at 1/200 time)")


def main() -> None:
    from callcontrol.platform.logs import configure_logging
    from callcontrol.platform.redis_server import EmbeddedRedis

    configure_logging("json", "critical")      # 20,000 agi.command_timeout warnings are the point
    limit = raise_fd_limit()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = int(os.environ.get("SOAK_SESSIONS", min(20_000, limit - 400)))
    reply_timeout = int(os.environ.get("SOAK_REPLY_TIMEOUT", 10))     # the production default
    print(f"  RLIMIT_NOFILE {limit} (hard {hard}); {n} silent sessions from a child process")
    with tempfile.TemporaryDirectory(prefix="apc-agisoak-") as tmp, \
            EmbeddedRedis(Path(tmp) / "redis", appendfsync="everysec") as redis:
        asyncio.run(_soak(redis.url, Path(tmp), n, reply_timeout))


if __name__ == "__main__":
    main()
