"""Real-Asterisk phase of `make bench`: full inmate calls per second through a real Asterisk 22 on this
box, and each process's CPU per call (Asterisk, controller, redis-server).

The site is the real-Asterisk tests' (tests/support/realworld.py): a private Asterisk with our
asterisk_conf/, a real redis-server and `callcontrol serve` as its own process, all on loopback. Calls
are Local channels placed over AMI by tests/support/switch.py, which plays the handset and the
recipient. Every call is the whole inmate flow: language, PIN, number, name (`#`), screening accepted
with 1, a short talk, the recipient hangs up.

Levels keep a fixed number of calls in flight (closed loop: a slot places its next call when its last
one is over) until the level's count of calls is placed. Prompts play in real time, so a call lasts
tens of seconds and calls/s at a level is bounded by Little's law (in flight / call duration): the bench
prints both, so the reader sees whether the switch or the box was the limit. CPU per call is
utime+stime from /proc/<pid>/stat of each process across the level, less the process's idle rate
(measured before the levels) over the level's length, over the calls completed; the box's ceiling is
then estimated as cores / total CPU per call.

Money is checked after each level (every call record completed, record amounts = balance decreases,
nothing left held); a level that fails it is marked ✘ and left out of the estimate.

Without an Asterisk (find_asterisk() returns None) the phase prints one line and returns.
REAL_BENCH_LEVELS ("4:4,16:16,48:48,96:96", in flight:calls) and REAL_BENCH_TALK (2 s) change the load;
the default takes about 2.5 minutes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAC = "FAC-07"
STATION = "0701"
NO_ACCOUNT = "3125589999"          # the warm-up calls' number: no account, so never dialled
FUNDS = 500                         # cents per account: a short call costs one started minute (9¢)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _numbers(n: int) -> list[str]:
    """Ten-digit Chicago numbers no facility policy names, one account (and one call) each. None ends in
    97, 98 or 99: the test dialplan's recipients there are unreachable, never answer or are busy."""
    return [f"312557{i:04d}" for i in range(10_000) if i % 100 < 97][:n]


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, all its threads, in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])          # fields 14 and 15 of proc(5)


def _box_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole box, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]                      # idle + iowait
    return sum(values) - idle, sum(values)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


@dataclass
class Level:
    in_flight: int
    calls: int = 0
    failed: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    setup: list[float] = field(default_factory=list)        # originate -> bridge, s
    durations: list[float] = field(default_factory=list)    # originate -> last channel gone, s
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per call, by process, net of idle
    gross_ms: dict[str, float] = field(default_factory=dict)  # per call, by process, as measured
    box_busy: float = 0.0                                   # share of the box's CPU in use, all processes
    money_ok: bool = False
    money_note: str = ""

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed if self.elapsed else 0.0

    @property
    def littles(self) -> float:
        return self.in_flight / statistics.mean(self.durations) if self.durations else 0.0

    @property
    def total_ms(self) -> float:
        return sum(self.cpu_ms[k] for k in ("asterisk", "controller", "redis"))


class Site:
    """The RealWorld, its accounts and the processes whose CPU is counted."""

    def __init__(self, world: Any, ledger: Any, numbers: list[str], accounts: dict[str, str]) -> None:
        self.world = world
        self.ledger = ledger
        self.numbers = numbers
        self.accounts = accounts

    def pids(self) -> dict[str, list[int]]:
        w = self.world
        return {"asterisk": [w.asterisk.proc.pid], "redis": [w.redis.proc.pid],
                "controller": [c.proc.pid for c in w.controllers if c.proc and c.proc.poll() is None],
                "harness": [os.getpid()]}

    def cpu(self) -> dict[str, int]:
        return {name: sum(_cpu_ticks(p) for p in pids) for name, pids in self.pids().items()}

    async def idle(self, seconds: float = 6.0) -> dict[str, float]:
        """CPU ms per second each process spends with no call (timers, heartbeats, housekeeping)."""
        before = self.cpu()
        await asyncio.sleep(seconds)
        after = self.cpu()
        return {k: (after[k] - before[k]) * 1000 / CLK_TCK / seconds for k in before}


async def _warm_up(site: Site, inmates: list[int]) -> tuple[int, float]:
    """One call per inmate to a number with no account (denied before any dial): the controller checks a
    PIN with scrypt once per inmate and process, and loads the number tables at its first quote; the
    levels should measure calls, not those one-offs. Returns the calls and the controller's CPU ms per
    warm-up call."""
    from tests.support.realworld import pin
    from tests.support.switch import Party, Switch

    before = site.cpu()
    async with Switch(*site.world.switch_args()) as sw:
        calls = [await sw.place(STATION, Party(["1", pin(who), f"{NO_ACCOUNT}#"])) for who in inmates]
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in calls)), 120)
    after = site.cpu()
    return len(calls), (after["controller"] - before["controller"]) * 1000 / CLK_TCK / len(calls)


async def _level(site: Site, in_flight: int, count: int, talk: float, inmates: list[int],
                 idle: dict[str, float]) -> Level:
    from tests.support.realworld import pin
    from tests.support.switch import Party, Switch

    level = Level(in_flight)
    todo = [site.numbers.pop(0) for _ in range(count)]
    before_bal = {n: await site.ledger.balance(site.accounts[n]) for n in todo}
    queue = list(todo)
    cpu0, box0, t0 = site.cpu(), _box_ticks(), time.monotonic()

    async with Switch(*site.world.switch_args()) as sw:
        async def slot(who: int, stagger: float) -> None:
            await asyncio.sleep(stagger)
            while queue:
                number = queue.pop(0)
                hs = Party(["1", pin(who), f"{number}#", "#"])
                call = await sw.place(STATION, hs, Party(["1"], talk=talk))
                try:
                    await asyncio.wait_for(call.done.wait(), 180)
                except TimeoutError:
                    level.failed.append(f"{number}: not over after 180 s")
                    continue
                level.durations.append(time.monotonic() - call.started)
                if call.bridged_at is None or call.dial_status != "ANSWER":
                    level.failed.append(f"{number}: not bridged ({call.dial_status or 'no dial'})")
                    continue
                level.setup.append(call.bridged_at - call.started)
                level.calls += 1

        # Slots start over the first second, as calls arrive on a real switch (not all in one tick).
        await asyncio.gather(*(slot(who, i / in_flight) for i, who in enumerate(inmates[:in_flight])))
    level.elapsed = time.monotonic() - t0
    cpu1, box1 = site.cpu(), _box_ticks()
    done = max(level.calls, 1)
    level.gross_ms = {k: (cpu1[k] - cpu0[k]) * 1000 / CLK_TCK / done for k in cpu0}
    level.cpu_ms = {k: level.gross_ms[k] - idle[k] * level.elapsed / done for k in cpu0}
    level.box_busy = (box1[0] - box0[0]) / max(1, box1[1] - box0[1])
    await _check_money(site, level, todo, before_bal)
    return level


async def _check_money(site: Site, level: Level, numbers: list[str], before: dict[str, Any]) -> None:
    """Every call record of the level completed; record amounts = balance decreases; nothing held."""
    wanted = {"+1" + n for n in numbers}
    deadline = time.monotonic() + 20
    while True:                                  # the sync worker copies call records into SQL
        records = [r for r in site.world.call_records() if r["number_e164"] in wanted]
        if len(records) >= len(wanted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    problems = []
    if len(records) != len(wanted):
        problems.append(f"{len(records)} records for {len(wanted)} calls")
    not_completed = [r for r in records if r["outcome"] != "completed"]
    if not_completed:
        problems.append(f"{len(not_completed)} not completed "
                        f"({sorted({(r['outcome'], r['reason']) for r in not_completed})})")
    charged = sum(r["amount"] for r in records)
    decrease = 0
    for n in numbers:
        bal = await site.ledger.balance(site.accounts[n])
        decrease += before[n].posted - bal.posted
        if bal.held:
            problems.append(f"+1{n} still holds {bal.held}")
    if charged != decrease:
        problems.append(f"records {charged}¢ != balances {decrease}¢")
    if level.failed:
        problems.append(f"{len(level.failed)} calls failed: {level.failed[:3]}")
    level.money_ok = not problems
    if problems:                                 # what the controller said about it
        loud = [e for e in site.world.controller.events() if e.get("level") in ("warning", "error")]
        problems += [f"controller: {e.get('event')} {str(e.get('error', ''))[:200]}" for e in loud[-3:]]
    level.money_note = (f"{len(records)} records completed, {charged}¢ charged = {decrease}¢ taken"
                        if not problems else "; ".join(problems))


def _report(levels: list[Level], warm: tuple[int, float], cores: int) -> None:
    print("  CPU ms per call net of each process's idle CPU (gross: as measured); harness = this process "
          "(AMI, the handsets' and recipients' scripts), not part of a site")
    print(f"  {'in flight':>9} {'calls':>5} {'calls/s':>7} {'flight/dur':>10} {'dur s':>5} "
          f"{'setup p50/p95 s':>15} | {'asterisk':>8} {'ctl':>6} {'redis':>5} {'total':>6} "
          f"{'gross':>6} {'ctl %':>5} | {'harness':>7} {'box busy':>8} | money")
    for lv in levels:
        dur = statistics.mean(lv.durations) if lv.durations else 0.0
        share = lv.cpu_ms["controller"] / lv.total_ms if lv.total_ms else 0.0
        gross = sum(lv.gross_ms[k] for k in ("asterisk", "controller", "redis"))
        print(f"  {lv.in_flight:>9} {lv.calls:>5} {lv.rate:>7.2f} {lv.littles:>10.2f} {dur:>5.1f} "
              f"{_pct(lv.setup, 50):>7.1f} /{_pct(lv.setup, 95):>5.1f}   | {lv.cpu_ms['asterisk']:>8.1f} "
              f"{lv.cpu_ms['controller']:>6.1f} {lv.cpu_ms['redis']:>5.1f} {lv.total_ms:>6.1f} {gross:>6.1f} "
              f"{share:>5.0%} | {lv.gross_ms['harness']:>7.1f} {lv.box_busy:>8.0%} | "
              f"{'✔' if lv.money_ok else '✘'} {lv.money_note}")
    n, ctl_ms = warm
    print(f"  warm-up: {n} calls, one per inmate, denied at the number (no account), cost the controller "
          f"{ctl_ms:.0f} ms each: the scrypt PIN check, once per inmate and process, and the number tables "
          "loaded at the first quote are not in the figures above")
    good = [lv for lv in levels if lv.money_ok and lv.calls]
    if len(good) != len(levels):
        print("  ✘ levels marked ✘ are left out of the estimate below")
    if not good:
        return
    top = max(good, key=lambda lv: lv.in_flight)
    dur = statistics.mean(top.durations)
    if top.rate >= 0.8 * top.littles:
        print(f"  at {top.in_flight} in flight: {top.rate:.2f} calls/s against {top.littles:.2f}/s by "
              f"Little's law ({top.in_flight} / {dur:.1f} s): the calls' length sets the rate, not the box "
              f"({top.box_busy:.0%} busy, every process on it)")
    else:
        print(f"  at {top.in_flight} in flight: {top.rate:.2f} calls/s, below Little's law's "
              f"{top.littles:.2f}/s: calls queued ({top.box_busy:.0%} of the box busy, every process on it)")
    ceiling = cores / (top.total_ms / 1000)
    share = top.cpu_ms["controller"] / top.total_ms
    print(f"  ceiling estimate, {cores} cores / {top.total_ms:.0f} ms per call (asterisk + controller + "
          f"redis at {top.in_flight} in flight) ≈ {ceiling:.0f} calls/s ≈ {ceiling * dur:.0f} calls in "
          f"flight at {dur:.0f} s a call; the controller's share there: {share:.0%} "
          f"(≈ {ceiling * top.cpu_ms['controller'] / 1000:.2f} core)")


async def _run(binary: str, levels_wanted: list[tuple[int, int]], talk: float, root: Path) -> None:
    from ledger import Ledger
    from tests.support.realworld import BENCH_INMATES, RealWorld

    world = RealWorld(binary, root, CALLCONTROL_RING_TIMEOUT="8")
    world.start()
    try:
        ledger = await Ledger.connect(world.redis.url)
        total = sum(count for _, count in levels_wanted)
        numbers = _numbers(total)
        accounts = {}
        for n in numbers:
            accounts[n] = await ledger.open_account(f"bench-{n}", FAC, "+1" + n, owner="bench")
            await ledger.deposit(f"bench-dep-{n}", accounts[n], FUNDS)
        site = Site(world, ledger, numbers, accounts)
        inmates = list(BENCH_INMATES)[:max(n for n, _ in levels_wanted)]
        warm = await _warm_up(site, inmates)
        idle = await site.idle()
        print(f"  {len(numbers)} accounts funded; warm-up done; idle CPU ms/s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in idle.items())
              + f"; levels (in flight, calls) {levels_wanted}, {talk:g} s talk", flush=True)
        levels = []
        for n, count in levels_wanted:
            levels.append(await _level(site, n, count, talk, inmates, idle))
            lv = levels[-1]
            print(f"    {n} in flight: {lv.calls} calls in {lv.elapsed:.0f} s "
                  f"{'✔' if lv.money_ok else '✘'}", flush=True)
        await ledger.close()
        _report(levels, warm, os.cpu_count() or 1)
        problems = world.asterisk.problems()
        if problems:
            print(f"  Asterisk logged {len(problems)} unexplained WARNING/ERROR lines, first: {problems[0]}")
    finally:
        world.stop()


def main() -> None:
    from callcontrol.platform.logs import configure_logging
    from tests.support.asterisk import ENABLE_HINT, find_asterisk
    from tests.support.realworld import BENCH_INMATES

    configure_logging("json", "critical")     # the harness's AMI client logs every action at debug

    try:
        binary = find_asterisk()
    except RuntimeError as exc:
        print(f"  skipped: no usable Asterisk ({str(exc).splitlines()[0]})")
        return
    if binary is None:
        print("  skipped: " + ENABLE_HINT.replace("real-Asterisk tests skipped: ", ""))
        return
    spec = os.environ.get("REAL_BENCH_LEVELS", "4:4,16:16,48:48,96:96")
    levels = [(int(a), int(b or a))
              for a, _, b in (x.strip().partition(":") for x in spec.split(",") if x.strip())]
    talk = float(os.environ.get("REAL_BENCH_TALK", "2"))
    if max(n for n, _ in levels) > len(BENCH_INMATES):
        print(f"  skipped: more in flight than the {len(BENCH_INMATES)} bench inmates (one call each)")
        return
    print(f"  Asterisk {binary}")
    with tempfile.TemporaryDirectory(prefix="apc-realbench-") as tmp:
        asyncio.run(_run(binary, levels, talk, Path(tmp)))


if __name__ == "__main__":
    main()
