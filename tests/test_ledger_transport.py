"""The ledger's Redis watchdog: a silent Redis fails closed, a busy event loop does not count as one."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from ledger import Ledger, LedgerUnavailable
from ledger.facade import SyncLedger
from ledger.scripts import make
from tests.support.loops import run_on

NUM = "+13125551234"


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_stalled_event_loop_is_not_a_dead_redis(redis_url: str, loop_kind: str) -> None:
    # Thousands of calls ending at once can keep the loop busy for seconds while Redis' reply waits
    # in the socket: the watchdog must read that reply before it judges Redis, on either event loop.
    async def main() -> None:
        led = await Ledger.connect(redis_url, timeout=1.0)
        try:
            account = await led.open_account("open-1", "FAC-07", NUM)
            await led.deposit("dep-1", account, 500)
            pending = asyncio.ensure_future(led.balance(account))
            await asyncio.sleep(0)  # the request is queued, its write scheduled
            # Right after the write and before any read, the loop is busy for 2.5 timeouts.
            asyncio.get_running_loop().call_soon(time.sleep, 2.5)
            assert (await pending).posted == 500
        finally:
            await led.close()

    run_on(loop_kind, main)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_silent_redis_fails_closed(redis_url: str, loop_kind: str) -> None:
    async def main() -> None:
        led = await Ledger.connect(redis_url, timeout=1.0)
        try:
            account = await led.open_account("open-1", "FAC-07", NUM)
            # Redis answers nobody for 3 s (CLIENT PAUSE: DEBUG SLEEP is disabled by default since 7.0).
            redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "3000", "ALL")
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable) as lost:
                await led.deposit("dep-1", account, 500)
            assert time.monotonic() - started < 2.5  # the watchdog, not Redis waking up, ended the wait
            assert not lost.value.not_applied           # sent: its outcome is unknown, not "not done"
        finally:
            await led.close()

    run_on(loop_kind, main)


def test_scripts_lost_by_redis_are_sent_again(redis_url: str) -> None:
    # After SCRIPT FLUSH (or a failover to a node that never loaded them) EVALSHA answers NOSCRIPT:
    # the transport sends the script itself once, through both of its entry points.
    with SyncLedger(redis_url) as led:
        account = led.open_account("open-1", "FAC-07", NUM)
        client = redis.Redis.from_url(redis_url)
        client.script_flush()
        client.config_resetstat()
        assert led.deposit("dep-1", account, 500).posted == 500       # Transport.run
        client.script_flush()
        noop = make("noop", "return '=ok'")
        assert led.run(led.ledger._t.script(noop, 0, (), ())) == "=ok"   # Transport.script
        assert client.info("commandstats")["cmdstat_eval"]["calls"] == 2
        assert led.balance(account).posted == 500


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_requests_behind_a_reconnect_to_a_mute_redis_fail_together(loop_kind: str) -> None:
    # A Redis that accepts connections and never answers (hung, or a black-holing proxy): the requests
    # queued behind the reconnect share one attempt and fail closed together, one timeout later, not
    # one timeout after another (50 settlements would otherwise wait 50 timeouts for their refusal).
    from ledger.transport import Transport

    async def main() -> None:
        accepted = 0

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.read()                       # read everything, answer nothing
            writer.close()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = Transport(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        try:
            started = time.monotonic()
            results = await asyncio.gather(*(transport.seed.connect() for _ in range(50)),
                                           return_exceptions=True)
            elapsed = time.monotonic() - started
            assert all(isinstance(r, LedgerUnavailable) for r in results), {repr(r) for r in results}
            assert all(r.not_applied for r in results)  # nothing was ever sent: certainly not done
            assert accepted == 1                       # one attempt, shared
            assert elapsed < 5.0                       # serialised, they would take 25 s
            with pytest.raises(LedgerUnavailable):     # the next request tries afresh
                await transport.seed.connect()
            assert accepted == 2
        finally:
            await transport.close()
            server.close()

    run_on(loop_kind, main)


def test_a_redis_that_is_not_there_certainly_applied_nothing() -> None:
    import socket

    from ledger.transport import Transport

    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        transport = Transport(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        try:
            with pytest.raises(LedgerUnavailable) as refused:
                await transport.seed.connect()
            assert refused.value.not_applied
        finally:
            await transport.close()

    asyncio.run(main())
