"""SIGTERM to a real `callcontrol serve` process with 200 calls up: new inmate calls are refused at once,
the calls in progress are metered and settled as they end, and the process exits 0 with nothing
unsettled (`callcontrol calls reconcile` agrees)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from callcontrol.platform.clock import Clock
from callcontrol.platform.config import REPO_ROOT
from callcontrol.sim import Recipient, SimConfig, Simulator
from ledger import Ledger
from tests.e2e_support import handset

N = 200
SIM_SCALE = 0.1          # the simulated Asterisk runs 10x faster; the controller is on real time


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def always_open_facilities(tmp_path: Path) -> Path:
    """The shipped facility data with FAC-07 open around the clock (the test runs at any hour)."""
    target = tmp_path / "facility_data"
    shutil.copytree(REPO_ROOT / "facility_data", target)
    fac = target / "facilities" / "FAC-07.toml"
    fac.write_text(re.sub(r'(?m)^all = ".*"$', 'all = "00:00-24:00"', fac.read_text()))
    return target


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def gauge(text: str, name: str) -> float:
    m = re.search(rf"(?m)^{name} (\S+)$", text)
    return float(m.group(1)) if m else 0.0


@pytest.mark.slow
def test_sigterm_drains_200_calls_in_progress_and_exits_0(tmp_path: Path, redis_url: str) -> None:
    agi_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "CALLCONTROL_REDIS_URL": redis_url,
           "CALLCONTROL_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
           "CALLCONTROL_DATA_DIR": str(tmp_path),
           "CALLCONTROL_FACILITY_DIR": str(always_open_facilities(tmp_path)),
           "CALLCONTROL_AGI_BIND": f"127.0.0.1:{agi_port}", "CALLCONTROL_AMI_USER": "",
           "CALLCONTROL_METRICS_BIND": f"127.0.0.1:{metrics_port}", "CALLCONTROL_DRAIN_SECONDS": "120",
           "CALLCONTROL_LOG_FORMAT": "json", "CALLCONTROL_LOG_LEVEL": "info"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "callcontrol.cli", "serve"], env=env, cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        asyncio.run(_drive(proc, agi_port, metrics_port, redis_url))
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert '"drain_started"' in text and '"drain_complete"' in text and "drain_deadline_passed" not in text
    check = subprocess.run([sys.executable, "-m", "callcontrol.cli", "calls", "reconcile"], env=env,
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


async def _drive(proc: subprocess.Popen[bytes], agi_port: int, metrics_port: int, redis_url: str) -> None:
    ledger = await Ledger.connect(redis_url)
    numbers = [f"+1312556{i:04d}" for i in range(N)]
    for number in numbers:
        account = await ledger.open_account(f"drain-open-{number[1:]}", "FAC-07", number, owner="test")
        await ledger.deposit(f"drain-dep-{number[1:]}", account, 2000)
    for _ in range(300):                        # the controller is up when /metrics answers
        try:
            await asyncio.to_thread(scrape, metrics_port)
            break
        except OSError:
            assert proc.poll() is None, "callcontrol serve exited early"
            await asyncio.sleep(0.1)
    sim = Simulator(("127.0.0.1", agi_port), clock=Clock(SIM_SCALE), config=SimConfig(hangup_agi="hangup"),
                    ami_port=None)
    await sim.start()
    try:
        calls = [asyncio.create_task(sim.place_call(
            "FAC-07", "0701", extension="0701", handset=handset(n[2:]),
            recipient=[Recipient(n, keys="1", talk=120)])) for n in numbers]      # ~12 s of real talk
        deadline = time.monotonic() + 60
        while True:                             # all 200 accepted and metered
            text = await asyncio.to_thread(scrape, metrics_port)
            if gauge(text, "advancepay_calls_in_progress") == N and \
                    gauge(text, r'advancepay_ledger_op_seconds_count\{op="capture"\}') >= N:
                break
            assert time.monotonic() < deadline, "calls did not all connect"
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        late = await asyncio.gather(*(sim.place_call(
            "FAC-07", "0701", extension="0701", handset=handset(numbers[i][2:]),
            recipient=[Recipient(numbers[i], keys="1", talk=5)]) for i in range(5)))
        assert time.monotonic() - t0 < 5                      # refused at once, not after prompts
        for result in late:
            assert result.variables.get("APC_DRAINING") == "1" and result.dials == []
        assert proc.poll() is None                             # still serving the 200
        results = await asyncio.gather(*calls)
    finally:
        await sim.stop()
    for result in results:
        assert result.bridged and result.variables.get("CALL_SETTLED") == "1", result.variables
    for number in numbers:
        account = await ledger.find_account("FAC-07", number)
        assert account is not None
        bal = await ledger.balance(account)
        assert bal.held == 0 and 0 < 2000 - bal.posted <= 2000     # charged, hold released
    await ledger.close()
