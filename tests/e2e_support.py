"""Helpers for the end-to-end tests: a controller and the simulated Asterisk over real TCP, a real
redis-server and real SQL, scripted inmates and recipients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from callcontrol.commands import DEMO_START, Stack
from callcontrol.platform.config import REPO_ROOT, load_settings
from callcontrol.sim import Handset, Record
from ledger import Ledger

FAC = "FAC-07"
PIN = "10422468"                 # inmate 1042, passcode 2468 (facility_data/policy/FAC-07.toml)
SCALE = 0.005                    # 200 simulated seconds per real second


def settings(tmp_path: Path, **overrides: Any) -> Any:
    base = load_settings(env={})
    return replace(base, data_dir=tmp_path, facility_dir=REPO_ROOT / "facility_data",
                   recording_dir="/var/spool/asterisk/monitor/advancepay", ring_timeout=30, **overrides)


def handset(number: str, *, pin: str = PIN, lang: str = "1", name_key: str | None = "#",
            extra: list[object] | None = None, **kw: Any) -> Handset:
    """An inmate who picks a language, keys the PIN and the number, and records their name."""
    actions: list[object] = [lang, pin, number, Record(name_key)]
    return Handset(actions=actions + (extra or []), **kw)


async def seed(ledger: Ledger, number: str, cents: int, facility: str = FAC) -> str:
    account = await ledger.open_account(f"seed-open-{facility}-{number[1:]}", facility, number, owner="test")
    if cents:
        await ledger.deposit(f"seed-dep-{facility}-{number[1:]}", account, cents)
    return account


@contextlib.asynccontextmanager
async def running(tmp_path: Path, redis_url: str, *, scale: float = SCALE, start_at: float = DEMO_START,
                  sql_url: str | None = None, run_sync: bool = False, **kw: Any) -> AsyncIterator[Harness]:
    stack = Stack(settings(tmp_path), redis_url, scale=scale, start_at=start_at,
                  sql_url=sql_url or f"sqlite:///{tmp_path / 'ledger.sqlite3'}", run_sync=run_sync,
                  names_dir=str(tmp_path / "names"), **kw)
    await stack.start()
    ledger = await Ledger.connect(redis_url)
    harness = Harness(stack, ledger)
    assert stack.controller.ctx is not None
    stack.controller.ctx.on_record = harness.records.append
    try:
        yield harness
    finally:
        await ledger.close()
        await stack.stop()


class Harness:
    def __init__(self, stack: Stack, ledger: Ledger) -> None:
        self.stack = stack
        self.ledger = ledger
        self.records: list[dict[str, Any]] = []

    @property
    def sim(self) -> Any:
        return self.stack.sim

    @property
    def controller(self) -> Any:
        return self.stack.controller

    async def call(self, hs: Handset, *recipients: Any, station: str = "0701", facility: str = FAC,
                   **kw: Any) -> Any:
        return await self.sim.place_call(facility, station, extension=station, handset=hs,
                                         recipient=list(recipients) or None, **kw)

    async def available(self, account: str) -> int:
        return (await self.ledger.balance(account)).available

    async def posted(self, account: str) -> int:
        return (await self.ledger.balance(account)).posted

    def record_for(self, number: str) -> dict[str, Any]:
        found = [r for r in self.records if r["number_e164"] == number or r["dialled"] == number]
        assert found, f"no call record for {number}: {self.records}"
        return found[-1]

    async def quiesce(self, seconds: float = 0.05) -> None:
        """Let in-flight background work (hangup AGIs, captures) finish."""
        await asyncio.sleep(seconds)


def prompt_ids(prompts: list[str]) -> list[str]:
    """'advancepay/en/goodbye' -> 'goodbye' (other files as they are)."""
    return [p.rsplit("/", 1)[-1] if p.startswith("advancepay/") else p for p in prompts]
