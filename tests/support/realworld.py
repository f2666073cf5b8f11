"""A whole site on loopback for the real-Asterisk tests: redis-server, Asterisk, `callcontrol serve`.

The controller runs as its own process (`python -m callcontrol.cli serve`), configured only through its
documented environment variables, so a test can kill -9 it like an operator's crash. Facility data is a
copy of facility_data/ with FAC-07 open around the clock (the tests run at any hour) and more inmates
sharing the demo passcode, so calls placed together never share an inmate.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from callcontrol.platform.config import REPO_ROOT
from callcontrol.platform.redis_server import EmbeddedRedis
from tests.support.asterisk import CONTROLLER_SECRET, HARNESS_SECRET, HARNESS_USER, AsteriskInstance
from tests.support.servers import free_port

EXTRA_INMATES = range(1050, 1080)        # passcode 2468, like inmate 1042
BENCH_INMATES = range(1100, 1200)        # passcode 2468 too: bench/real_asterisk.py keeps ≤ 100 in flight


def pin(inmate: int = 1042) -> str:
    return f"{inmate}2468#"


def facility_copy(dest: Path) -> Path:
    shutil.copytree(REPO_ROOT / "facility_data", dest)
    fac = dest / "facilities" / "FAC-07.toml"
    fac.write_text(re.sub(r'(?m)^all = "07:00-23:00"', 'all = "00:00-24:00"', fac.read_text()))
    policy = dest / "policy" / "FAC-07.toml"
    text = policy.read_text()
    pin_hash = re.search(r'\[inmates\.1042\]\nname = "[^"]*"\npin_hash = "([^"]+)"', text)
    assert pin_hash, "FAC-07 policy has no inmate 1042"
    text += "".join(f'\n[inmates.{n}]\nname = "Inmate {n}"\npin_hash = "{pin_hash.group(1)}"\n'
                    for n in (*EXTRA_INMATES, *BENCH_INMATES))
    policy.write_text(text)
    return dest


class ControllerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, instance: str) -> None:
        self.env = env
        self.log_path = log_path
        self.instance = instance
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ControllerProcess:
        out = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", "callcontrol.cli", "serve", "--instance",
                                      self.instance], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log()[-3000:]}")
            if "callcontrol: serving FastAGI" in self.log():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"serve did not start: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class RealWorld:
    """redis-server + Asterisk + one or more controller processes sharing one FastAGI port in turn."""

    def __init__(self, binary: str, root: Path | None = None, **controller_env: str) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="apc-real-"))
        self.controller_env = controller_env
        self.agi_port = free_port()
        self.fallback_port = free_port()      # CONTROLLER_FALLBACK: new calls while CONTROLLER drains
        self.ami_port = free_port()
        self.redis = EmbeddedRedis(self.root / "redis", port=free_port(), appendfsync="always")
        self.asterisk = AsteriskInstance(binary, agi_port=self.agi_port, ami_port=self.ami_port,
                                         fallback_port=self.fallback_port, root=self.root / "asterisk")
        self.facility_dir = facility_copy(self.root / "facility_data")
        self.sqlite = self.root / "ledger.sqlite3"
        self.controllers: list[ControllerProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
        env.update({
            "CALLCONTROL_REDIS_URL": self.redis.url,
            "CALLCONTROL_DATABASE_URL": f"sqlite:///{self.sqlite}",
            "CALLCONTROL_DATA_DIR": str(self.root / "data"),
            "CALLCONTROL_FACILITY_DIR": str(self.facility_dir),
            "CALLCONTROL_AGI_BIND": f"127.0.0.1:{self.agi_port}",
            "CALLCONTROL_AMI_PORT": str(self.ami_port),
            "CALLCONTROL_AMI_USER": "callcontrol",
            "CALLCONTROL_AMI_SECRET": CONTROLLER_SECRET,
            "CALLCONTROL_RECORDING_DIR": str(self.asterisk.recording_dir),
            "CALLCONTROL_LOG_FORMAT": "json",
            "CALLCONTROL_PAYMENT_GATEWAY": "sandbox",
            **self.controller_env,
            **extra,
        })
        return env

    def start(self) -> RealWorld:
        self.redis.start()
        self.asterisk.start()
        self.start_controller()
        return self

    def start_controller(self, **extra: str) -> ControllerProcess:
        n = len(self.controllers) + 1
        ctl = ControllerProcess(self.env(**extra), self.root / f"controller-{n}.log", f"ctl-{n}")
        self.controllers.append(ctl.start())
        return ctl

    @property
    def controller(self) -> ControllerProcess:
        return self.controllers[-1]

    def stop(self) -> None:
        for ctl in self.controllers:
            ctl.stop()
        self.asterisk.stop()
        self.redis.stop()

    def switch_args(self) -> tuple[str, int, str, str]:
        return "127.0.0.1", self.ami_port, HARNESS_USER, HARNESS_SECRET

    # --- what the controller stored ------------------------------------------------------------------
    def call_records(self) -> list[dict[str, Any]]:
        if not self.sqlite.exists():
            return []
        with sqlite3.connect(self.sqlite) as db:
            db.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in db.execute("SELECT * FROM call_records")]
            except sqlite3.OperationalError:
                return []

    def logs(self) -> str:
        return "\n".join(ctl.log() for ctl in self.controllers)
