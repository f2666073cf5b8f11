"""Silent and hostile FastAGI peers, over real TCP: command deadlines, capped replies, vanished peers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import struct
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from callcontrol.asterisk.agi import AGIChannel, AGIHangup, AGITimeout, Deadlines
from callcontrol.asterisk.agi_deadlines import UNKNOWN_PROMPT_SECONDS, prompt_lengths
from callcontrol.decisions import dial_args
from ivr_prompts.catalog import PACKAGE_DIR
from tests.test_agi_server import Harness, closed_by_server, expect_line, run

SHORT = Deadlines(reply=0.3, dial_grace=1.0, lengths={"en/enter_pin": 0.2})


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------------------- deadlines


def test_deadlines_fit_each_command() -> None:
    d = Deadlines(reply=2.0, dial_grace=100.0, lengths={"en/a": 1.5, "en/b": 2.5})
    assert d.for_command("GET VARIABLE", ["DIALSTATUS"]) == 2.0
    assert d.for_command("ANSWER", []) == 2.0
    assert d.for_command("STREAM FILE", ["advancepay/en/a", ""]) == 3.5
    assert d.for_command("STREAM FILE", ["beep", ""]) == 2.0 + UNKNOWN_PROMPT_SECONDS
    # GET DATA: the prompt, then up to the timeout for each digit.
    assert d.for_command("GET DATA", ["advancepay/en/a", 5000, 4]) == 2.0 + 1.5 + 20.0
    assert d.for_command("WAIT FOR DIGIT", [3000]) == 5.0
    assert d.for_command("EXEC", ["Playback", "advancepay/en/a&advancepay/en/b"]) == 6.0
    assert d.for_command("EXEC", ["Read", "K,advancepay/en/a&advancepay/en/b,1,,1,5"]) == 2.0 + 4.0 + 5.0
    assert d.for_command("EXEC", ["MixMonitor", "/spool/c1.wav"]) == 2.0


def test_dial_deadline_comes_from_the_flows_dial_arguments() -> None:
    d = Deadlines(reply=2.0, dial_grace=100.0)
    args = dial_args("Local/{number}@apc-outbound", "+13125551234", 30, "c1", 900, 60)
    assert d.for_command("EXEC", ["Dial", args]) == 2.0 + 30 + 900 + 100
    no_warning = dial_args("Local/{number}@apc-outbound", "+13125551234", 45, "c1", 120, 0)
    assert d.for_command("EXEC", ["Dial", no_warning]) == 2.0 + 45 + 120 + 100


def test_prompt_lengths_are_read_from_the_wav_files() -> None:
    lengths = prompt_lengths(PACKAGE_DIR)
    assert 0.2 < lengths["en/enter_pin"] < 20 and "es/enter_pin" in lengths
    d = Deadlines(reply=1.0, lengths=lengths)
    assert d.for_command("STREAM FILE", ["advancepay/en/enter_pin", ""]) == 1.0 + lengths["en/enter_pin"]


# ----------------------------------------------------------------------------------- silent peers


def test_a_peer_that_never_replies_is_dropped_at_the_command_deadline() -> None:
    out: dict[str, Any] = {}

    async def flow(ch: AGIChannel) -> None:
        try:
            await ch.get_variable("FACILITY_ID")      # no timeout given: the command's own deadline
        except AGITimeout as exc:
            out["error"] = exc
            raise

    async def main() -> tuple[bytes, float, int]:
        async with Harness(flow, deadlines=SHORT) as h:
            reader, _ = await h.connect()
            line = await expect_line(reader)
            t0 = time.monotonic()
            await closed_by_server(reader, 3.0)        # TimeoutError here: the session is held
            return line, time.monotonic() - t0, h.server.active_sessions

    with capture_logs() as logs:
        line, elapsed, active = run(main())
    assert line == b"GET VARIABLE FACILITY_ID\n" and 0.2 < elapsed < 2.0 and active == 0
    assert isinstance(out["error"], AGITimeout)
    warned = [e for e in logs if e["event"] == "agi.command_timeout"]
    assert warned and warned[0]["command"] == "GET VARIABLE" and warned[0]["log_level"] == "warning"


def test_two_hundred_silent_sessions_are_reclaimed() -> None:
    n = 200

    async def flow(ch: AGIChannel) -> None:
        await ch.answer()

    async def main() -> tuple[int, int, int, int]:
        async with Harness(flow, deadlines=SHORT) as h:
            idle = _open_fds()
            peers = [await h.connect() for _ in range(n)]
            for reader, _ in peers:
                assert await expect_line(reader, 5) == b"ANSWER\n"
            held = _open_fds()
            ends = await asyncio.gather(*(closed_by_server(r, 5.0) for r, _ in peers))
            for _, writer in peers:
                writer.close()
            for _ in range(200):
                if h.server.active_sessions == 0 and _open_fds() <= idle:
                    break
                await asyncio.sleep(0.02)
            assert ends == [b""] * n
            return idle, held, _open_fds(), h.server.active_sessions

    idle, held, after, active = run(main())
    assert held >= idle + 2 * n            # both ends of every session were open
    assert after <= idle and active == 0


def test_a_flood_of_hangup_lines_instead_of_a_reply_does_not_keep_the_session() -> None:
    async def flow(ch: AGIChannel) -> None:
        # A PIN entry's own deadline is long (8 digits of 30 s); the HANGUP lines cut it to `reply`.
        await ch.get_data("advancepay/en/enter_pin", 30_000, 8, sensitive=True)

    async def main() -> tuple[float, str | None]:
        async with Harness(flow, deadlines=SHORT) as h:
            reader, writer = await h.connect()
            await expect_line(reader)
            t0 = time.monotonic()
            writer.write(b"HANGUP\n" * 1000)
            await closed_by_server(reader, 3.0)
            await asyncio.wait_for(h.done.wait(), 2)
            return time.monotonic() - t0, h.calls[0].hangup_reason

    with capture_logs() as logs:
        elapsed, reason = run(main())
    assert elapsed < 2.0 and reason == "hangup-line"
    warned = [e for e in logs if e["event"] == "agi.command_timeout"]
    assert warned and warned[0]["command"] == "GET DATA"
    assert "enter_pin" not in repr(logs)     # a sensitive command's arguments are never logged


# ------------------------------------------------------------------------------------ hostile peers


def test_a_multi_line_reply_that_never_ends_fails_the_session() -> None:
    out: dict[str, Any] = {}

    async def flow(ch: AGIChannel) -> None:
        with pytest.raises(AGIHangup):
            await ch.send("STREAM FILE", timeout=60)  # a deadline far away: the cap must act first
        out["reason"] = ch.hangup_reason
        out["buffered"] = len(ch._assembler._lines)

    async def main() -> int:
        async with Harness(flow) as h:
            reader, writer = await h.connect()
            await expect_line(reader)
            writer.write(b"520-Invalid command syntax.  Proper usage follows:\n")
            sent = 0
            with contextlib.suppress(ConnectionError, OSError):
                for _ in range(20_000):                   # 2 MB of body, never the closing line
                    writer.write(b"x" * 99 + b"\n")
                    sent += 1
                    if sent % 100 == 0:
                        await writer.drain()
                        await asyncio.sleep(0.001)        # let the server read what came so far
                        if h.done.is_set():
                            break
            await asyncio.wait_for(h.done.wait(), 5)
            await closed_by_server(reader)
            return sent

    with capture_logs() as logs:
        sent = run(main())
    assert out == {"reason": "protocol-error", "buffered": 0}
    assert sent < 20_000                                  # cut off long before the peer was done
    assert any(e["event"] == "agi.protocol_error" and "multi-line" in e["error"] for e in logs)


def test_an_endless_line_fails_the_session() -> None:
    async def flow(ch: AGIChannel) -> None:
        with pytest.raises(AGIHangup):
            await ch.send("VERBOSE", "x", timeout=60)
        assert ch.hangup_reason == "protocol-error"

    async def main() -> None:
        async with Harness(flow) as h:
            reader, writer = await h.connect()
            await expect_line(reader)
            with contextlib.suppress(ConnectionError, OSError):
                for _ in range(100):                      # 1 MiB with no line end
                    writer.write(b"2" * 10_240)
                    await writer.drain()
            await asyncio.wait_for(h.done.wait(), 5)
            assert not h.errors

    run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connections_reset_at_once_are_counted_not_logged_as_refused(loop: str) -> None:
    # A burst of connections reset before the server accepts them: with uvloop their address can no
    # longer be read, with asyncio their first read fails. Neither is a stranger nor a bad env block.
    n = 50

    async def flow(ch: AGIChannel) -> None:
        pass

    async def main() -> tuple[int, int, int]:
        async with Harness(flow) as h:
            for _ in range(n):       # blocking calls: the loop cannot accept until all are reset
                sock = socket.create_connection(("127.0.0.1", h.server.port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            for _ in range(200):
                if h.server.vanished >= n:
                    break
                await asyncio.sleep(0.01)
            reader, writer = await h.connect()
            await closed_by_server(reader)                # the server still serves
            writer.close()
            assert len(h.calls) == 1
            return h.server.vanished, h.server.refused, h.server.rejected

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    with capture_logs() as logs:
        assert runner(asyncio.wait_for(main(), 20)) == (n, 0, 0)
    assert not [e for e in logs if e["log_level"] == "warning"]


# ------------------------------------------------------------------------------- a metered call


class _ShortDial(Deadlines):
    """The flow's Dial would get ring + L() + grace; here 1.5 s of real time (300 s of the sim's)."""

    def exec_app(self, app: str, argument: str) -> float:
        return 1.0 if app == "Dial" else super().exec_app(app, argument)


def test_a_dial_that_outlives_its_deadline_settles_what_was_used(tmp_path: Any, redis_url: str) -> None:
    from callcontrol.sim import Recipient
    from tests.e2e_support import handset, running, seed

    maria = "+13125551234"

    async def go() -> tuple[dict[str, Any], int, int]:
        async with running(tmp_path, redis_url) as h:
            account = await seed(h.ledger, maria, 500)
            agi = h.controller.agi
            agi.deadlines = _ShortDial(reply=0.5, dial_grace=0.0, lengths=agi.deadlines.lengths)
            # The recipient accepts and talks on; Asterisk (the sim) never returns from Dial in time.
            result = await h.call(handset("3125551234"), Recipient(maria, keys="1", talk=None))
            assert result.last_dial is not None and result.last_dial.bridge_start is not None
            await h.quiesce(0.3)
            return h.record_for(maria), await h.posted(account), await h.available(account)

    with capture_logs() as logs:
        rec, posted, available = asyncio.run(go())
    assert [e["command"] for e in logs if e["event"] == "agi.command_timeout"] == ["EXEC Dial"]
    # Billed from acceptance to the moment the session timed out (not to the L() limit of 900 s)...
    assert 60 < rec["billed_seconds"] < 900 and rec["outcome"] == "completed"
    minutes = math.ceil(rec["billed_seconds"] / 60)                      # ...at 8.56 c a minute
    assert rec["amount"] == int((minutes * Decimal("8.56")).quantize(Decimal(1), ROUND_HALF_UP))
    assert posted == 500 - rec["amount"] and available == posted      # charged once, hold released
