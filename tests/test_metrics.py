"""Metrics and health over real HTTP while real calls run through the simulator and a real Redis."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from pathlib import Path

from callcontrol.commands import DEMO_START, Stack
from callcontrol.sim import Recipient
from tests.e2e_support import SCALE, handset, seed, settings

MARIA = "+13125551234"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    return await asyncio.to_thread(get, port, path)


def test_metrics_move_while_calls_run_and_readyz_names_what_fails(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        base = settings(tmp_path, metrics_bind="127.0.0.1:0")
        stack = Stack(base, redis_url, scale=SCALE, start_at=DEMO_START,
                      sql_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}", run_sync=True,
                      names_dir=str(tmp_path / "names"))
        await stack.start()
        try:
            ctl = stack.controller
            port = ctl.health.port
            assert await scrape(port, "/healthz") == (200, "ok\n")
            assert await scrape(port, "/readyz") == (200, "ready\n")
            _, before = await scrape(port)
            assert sample(before, "advancepay_ami_connected") == 1

            await seed(ctl.ledger, MARIA, 500)
            long_call = asyncio.create_task(stack.sim.place_call(
                "FAC-07", "0701", extension="0701", handset=handset("3125551234"),
                recipient=[Recipient(MARIA, keys="1", talk=600)]))
            while not ctl.meter.calls:                        # accepted and metered
                await asyncio.sleep(0.02)
            _, during = await scrape(port)
            assert sample(during, "advancepay_calls_in_progress") == 1
            denied = await stack.sim.place_call("FAC-07", "0701", extension="0701",
                                                handset=handset("3125550199"))   # facility-blocked
            assert denied.last_dial is None
            await long_call
            await asyncio.sleep(0.3)
            _, after = await scrape(port)
        finally:
            await stack.stop()
        assert sample(after, "advancepay_calls_in_progress") == 0
        assert sample(after, "advancepay_call_setups_total", outcome="completed", reason="") == 1
        denied_total = r'advancepay_call_setups_total\{outcome="denied",[^}]*\} (\S+)'
        assert sum(float(v) for v in re.findall(denied_total, after)) == 1
        assert sample(after, "advancepay_authorization_seconds_count") == 1      # one call reached Dial
        assert sample(after, "advancepay_agi_command_seconds_count", command="GET DATA") >= 2
        assert sample(after, "advancepay_agi_command_seconds_count", command="EXEC Dial") == 0
        assert sample(after, "advancepay_ledger_op_seconds_count", op="hold") == 1
        assert sample(after, "advancepay_ledger_op_seconds_count", op="capture") >= 2
        assert sample(after, "advancepay_ledger_op_seconds_count", op="settle") == 1
        assert sample(after, "advancepay_deposits_total", result="ok") == 1
        assert sample(after, "advancepay_sync_entries_total") > 0
        # no call id, number or argument ever becomes a label
        assert "+1312" not in after and "3125551234" not in after and "call_id" not in after

    asyncio.run(go())


def test_readyz_is_503_naming_what_fails_and_while_draining(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        base = settings(tmp_path, metrics_bind="127.0.0.1:0")
        stack = Stack(base, redis_url, scale=SCALE, start_at=DEMO_START,
                      sql_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}", run_sync=False)
        await stack.start()
        try:
            ctl = stack.controller
            port = ctl.health.port
            await stack.sim.ami.stop()                        # Asterisk's manager goes away
            for _ in range(100):
                status, body = await scrape(port, "/readyz")
                if status == 503:
                    break
                await asyncio.sleep(0.05)
            assert status == 503 and "ami: ConnectionError" in body and "redis" not in body
            assert (await scrape(port, "/healthz"))[0] == 200
            ctl.sql_url = "postgresql+psycopg://nobody@127.0.0.1:1/none"      # nothing listens
            status, body = await scrape(port, "/readyz")
            assert status == 503 and "sql: OperationalError" in body
            await ctl.drain(0)
            status, body = await scrape(port, "/readyz")
            assert status == 503 and body.startswith("draining\n")
        finally:
            await stack.stop()

    asyncio.run(go())
