"""End to end: the automated-call alert channel through the simulated Asterisk over real TCP. An event in
the outbox (real SQL) → the notify worker's call channel → `callcontrol.alert_calls.AmiOriginator` over
AMI → Originate of Local/<digits>@apc-outbound into [apc-alerts] → the scripted person answers → the
controller's `alert` FastAGI speaks the alert in their language → pressing 1 goes on into [deposit-line]."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from callcontrol import speech
from callcontrol.alert_calls import AmiOriginator, message
from callcontrol.asterisk.ami import AMIClient
from callcontrol.sim import Recipient as Person
from callcontrol.sim import SimConfig
from callcontrol.sim.dialplan import alert_dialplan
from callcontrol.sim.scripts import Keys
from notify import Event, NotifyConfig, Recipient, StaticDirectory, Worker, enqueue
from notify.call import CallChannel
from notify.model import LOW_BALANCE
from notify.sql import make_engine, messages, migrate
from tests.e2e_support import running

NOON_CHICAGO = datetime(2026, 3, 2, 18, 0, tzinfo=UTC).timestamp()
NIGHT_CHICAGO = datetime(2026, 3, 3, 5, 0, tzinfo=UTC).timestamp()      # 23:00 in Chicago: quiet hours
MARIA = "+13125551234"
ACCOUNT = "acct-maria"


class Clock:
    def __init__(self, t: float = NOON_CHICAGO) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def low_balance(cents: int, lang: str = "en", key: str = "1") -> Event:
    return Event(LOW_BALANCE, f"low:{ACCOUNT}:{key}", account_id=ACCOUNT, number_e164=MARIA,
                 payload={"balance_cents": cents, "threshold_cents": 500}, language=lang,
                 time_zone="America/Chicago")


def directory(lang: str = "en", **kw: Any) -> StaticDirectory:
    return StaticDirectory(by_account={ACCOUNT: [Recipient("call", MARIA, language=lang,
                                                           time_zone="America/Chicago", **kw)]})


def rows(engine: sa.Engine) -> list[tuple[str, str, int, str]]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(messages))
        return [(r.state, r.reason, r.attempts, r.provider_id or "") for r in found]


Scenario = Callable[[Any, Worker, Clock, sa.Engine], Coroutine[Any, Any, None]]


@asynccontextmanager
async def alert_stack(tmp_path: Path, redis_url: str, dirs: StaticDirectory,
                      events: list[Event], clock: Clock) -> AsyncIterator[tuple[Any, Worker, sa.Engine]]:
    url = f"sqlite:///{tmp_path / 'notify.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        for ev in events:
            enqueue(conn, ev)
    async with running(tmp_path, redis_url, sim_config=SimConfig(dialplan=alert_dialplan())) as h:
        cfg = h.sim.config
        ami = AMIClient("127.0.0.1", h.sim.ami.port, cfg.ami_user, cfg.ami_secret, events="call")
        await ami.connect()
        try:
            worker = Worker(engine, dirs, {"call": CallChannel(AmiOriginator(ami, ring_seconds=30))},
                            NotifyConfig(call_attempts=3), clock=clock)
            yield h, worker, engine
        finally:
            await ami.close()
            engine.dispose()


async def ended(h: Any, n: int) -> None:
    """Until the simulator has torn down `n` originated calls."""
    for _ in range(400):
        if len(h.sim.originated) >= n and all(r.ended_at is not None for r in h.sim.originated[:n]):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"originated calls did not end: {h.sim.originated}")


def spoken(lang: str, cents: int) -> list[str]:
    return [speech.prompt(p, lang) for p in message(LOW_BALANCE, lang, cents)]


def in_order(heard: list[str], wanted: list[str]) -> bool:
    it = iter(heard)
    return all(any(p == w for p in it) for w in wanted)


def test_answered_alert_is_spoken_in_english_and_spanish_and_marked_sent(tmp_path: Path,
                                                                         redis_url: str) -> None:
    for lang, cents in (("en", 1250), ("es", 307)):
        clock = Clock()
        sub = tmp_path / lang
        sub.mkdir()

        async def go(lang: str = lang, cents: int = cents, sub: Path = sub, clock: Clock = clock) -> None:
            async with alert_stack(sub, redis_url, directory(lang), [low_balance(cents, lang)], clock) as (
                    h, worker, engine):
                h.sim.add_recipient(Person(MARIA, ring=3.0, actions=[], talk=None))   # presses nothing
                assert await worker.run_once() == 1
                await ended(h, 1)
                call = h.sim.originated[0]
                assert [t.script for t in call.agis] == ["alert"]
                heard = call.prompts
                assert in_order(heard, [*spoken(lang, cents), speech.prompt("alert_press_deposit", lang)])
                assert heard.count(speech.prompt("alert_low_balance", lang)) == 3     # said, then twice more
                assert heard[-1] == speech.prompt("goodbye", lang)
                assert call.variables.get("APC_ALERT_LANG") == lang
                assert call.variables.get("APC_ALERT_CHOICE", "") == ""
                [(state, _, attempts, provider)] = rows(engine)
                assert (state, attempts) == ("sent", 1) and provider == call.uniqueid, rows(engine)
                assert [d.target for d in h.sim.dials] == [f"Local/{MARIA[1:]}"]

        asyncio.run(go())


def test_pressing_1_goes_on_into_the_deposit_line(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        clock = Clock()
        async with alert_stack(tmp_path, redis_url, directory(), [low_balance(90)], clock) as (
                h, worker, engine):
            # 1 once the message has played, then the deposit line's language menu: hang up there
            h.sim.add_recipient(Person(MARIA, actions=[Keys("1", after=1.5)], talk=60.0))
            await worker.run_once()
            await ended(h, 1)
            call = h.sim.originated[0]
            assert [t.script for t in call.agis] == ["alert", "deposit"]
            assert call.variables["APC_ALERT_CHOICE"] == "deposit"
            assert in_order(call.prompts, spoken("en", 90))
            deposit = call.agis[1]
            assert deposit.commands(), "the deposit AGI sent no command"
            assert rows(engine)[0][0] == "sent"

    asyncio.run(go())


def test_no_answer_and_busy_are_retried_with_back_off_then_given_up(tmp_path: Path, redis_url: str) -> None:
    people = (("noanswer", Person(MARIA, answer=False)), ("busy", Person(MARIA, busy=True, ring=4)))
    for label, person in people:
        sub = tmp_path / label
        sub.mkdir()

        async def go(person: Person = person, sub: Path = sub) -> None:
            clock = Clock()
            async with alert_stack(sub, redis_url, directory(), [low_balance(90)], clock) as (
                    h, worker, engine):
                h.sim.add_recipient(person)
                assert await worker.run_once() == 1
                await ended(h, 1)
                [(state, reason, attempts, _)] = rows(engine)
                assert (state, attempts) == ("pending", 1)
                assert reason == "retry", rows(engine)          # no_answer / busy: the back-off
                assert await worker.run_once() == 0          # backing off: not due yet
                for n in (2, 3):
                    clock.t += 3600
                    assert await worker.run_once() == 1
                    await ended(h, n)
                [(state, reason, attempts, _)] = rows(engine)
                assert (state, reason, attempts) == ("failed", "gave_up", 3), rows(engine)
                clock.t += 3600 * 24
                assert await worker.run_once() == 0 and len(h.sim.originated) == 3
                assert all(r.answered_at is None and not r.agis for r in h.sim.originated)

        asyncio.run(go())


def test_quiet_hours_and_opt_out_place_no_call(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        clock = Clock(NIGHT_CHICAGO)
        async with alert_stack(tmp_path, redis_url, directory(), [low_balance(90)], clock) as (
                h, worker, engine):
            h.sim.add_recipient(Person(MARIA, actions=[]))
            await worker.run_once()
            assert h.sim.originated == []
            [(state, reason, attempts, _)] = rows(engine)
            assert (state, reason, attempts) == ("pending", "quiet_hours", 0)
            clock.t = NOON_CHICAGO + 86400         # the next day at noon: the call goes
            await worker.run_once()
            await ended(h, 1)
            assert rows(engine)[0][0] == "sent"

    asyncio.run(go())

    async def opted(sub: Path) -> None:
        clock = Clock()
        async with alert_stack(sub, redis_url, directory(opted_out=frozenset({"call"})), [low_balance(90)],
                               clock) as (h, worker, engine):
            h.sim.add_recipient(Person(MARIA, actions=[]))
            await worker.run_once()
            await asyncio.sleep(0.05)
            assert h.sim.originated == []
            assert [r[:2] for r in rows(engine)] == [("skipped", "opted_out")]

    (tmp_path / "opted").mkdir()
    asyncio.run(opted(tmp_path / "opted"))
