"""End to end, issue #12: an unfunded number at a facility with `unfunded_calls = "offer_one_call"`; the
recipient pays for this one call by card (sandbox gateway) over the simulator, real redis-server, real TCP.
FAC-07 offers one call (facility_data); the gateway is the sandbox, shared by controllers like a real
processor would be."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from callcontrol.controller import Controller
from callcontrol.flows import one_call_money as money
from callcontrol.platform.config import REPO_ROOT
from callcontrol.sim import HangUp, Recipient
from payments.sandbox import SandboxGateway
from rating import load_catalog
from tests.e2e_support import FAC, handset, prompt_ids, running
from tests.test_e2e_recovery import _crash

NEW = "+13125550177"                 # no AdvancePay account
CARD = ["4111111111111111", "1230", "123", "60601"]     # card, expiry (Dec 2030), CVV, ZIP


def quote() -> Any:
    return load_catalog(REPO_ROOT / "facility_data").quote(FAC, NEW, datetime.now(UTC))


def authorization() -> int:
    q = quote()
    return int(q.cost(q.max_duration(100_000)))


def pay(*card: str, talk: float | None = 200, **kw: Any) -> Recipient:
    return Recipient(NEW, actions=["1", *(card or CARD)], talk=talk, **kw)


async def gateway(h: Any) -> SandboxGateway:
    gw = SandboxGateway(now=h.controller.clock.now)
    h.controller.ctx.gateway = gw
    return gw


async def wait_for(cond: Any, tries: int = 500) -> None:
    for _ in range(tries):
        if await cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def open_list(redis_url: str) -> list[bytes]:
    r = redis.Redis.from_url(redis_url)
    try:
        return list(r.zrange(money.OPEN_KEY, 0, -1))
    finally:
        r.close()


def test_paid_call_meters_like_any_other_and_captures_exactly_its_cost(tmp_path: Path,
                                                                        redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            gw = await gateway(h)
            result = await h.call(handset("3125550177"), pay())
            await h.quiesce(0.3)
            rec = h.record_for(NEW)
            assert rec["outcome"] == "completed" and 200 <= rec["billed_seconds"] <= 215
            assert rec["amount"] == quote().cost(rec["billed_seconds"]) > 0
            # the authorization was the longest call at the rate, no fee; only the cost was captured
            [auth] = gw.auths.values()
            assert auth.amount_cents == authorization() > rec["amount"]
            assert (auth.state, auth.captured_cents) == ("captured", rec["amount"])
            assert gw.charged_cents() == rec["amount"] and gw.outstanding() == []
            # one billing path: the call's own hold, settled at the cost; the rest went back, account closed
            info = await h.ledger.hold_info(rec["account_id"], rec["call_id"])
            assert info is not None and (info.status, info.captured) == ("settled", rec["amount"])
            bal = await h.ledger.balance(rec["account_id"])
            assert (bal.state, bal.posted, bal.held) == ("closed", 0, 0)
            assert await h.ledger.find_account(FAC, NEW) is None     # no family account was made
            # the recipient heard the offer and the rate; the inmate was given the hold class
            heard = prompt_ids(result.last_dial.recipient_prompts)
            assert "one_call_no_account" in heard[0] or any("one_call" in p for p in heard)
            assert "m(advancepay-hold-en)" in result.last_dial.options
            assert open_list(redis_url) == []
    asyncio.run(go())


def test_declined_card_ends_the_call_and_charges_nothing(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            gw = await gateway(h)
            result = await h.call(handset("3125550177"), pay("4000000000000002", "1230", "123", "60601"))
            await h.quiesce(0.3)
            rec = h.record_for(NEW)
            assert rec["outcome"] == "refused" and rec["amount"] == 0
            assert result.last_dial.bridge_start is None
            assert gw.charged_cents() == 0 and gw.outstanding() == [] and gw.processed == 1
            assert "deposit_declined" in prompt_ids(result.last_dial.recipient_prompts)
            assert await h.ledger.find_account(FAC, NEW) is None
            assert open_list(redis_url) == []
    asyncio.run(go())


def test_recipient_hanging_up_while_keying_the_card_charges_nothing(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            gw = await gateway(h)
            result = await h.call(handset("3125550177"),
                                  Recipient(NEW, actions=["1", "4111111111111111", HangUp(1)]))
            await h.quiesce(0.3)
            rec = h.record_for(NEW)
            assert rec["outcome"] == "refused" and rec["amount"] == 0
            assert result.last_dial.bridge_start is None
            assert gw.processed == 0 and gw.charged_cents() == 0
            assert open_list(redis_url) == []
    asyncio.run(go())


def test_deny_without_a_gateway_is_the_old_refusal(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            h.controller.ctx.gateway = None       # no card processor configured: fail closed
            result = await h.call(handset("3125550177"), pay())
            assert "no_account" in prompt_ids(result.prompts) and not result.dials
            assert h.record_for(NEW)["outcome"] == "unfunded"
    asyncio.run(go())


def test_the_setting_defaults_to_deny_and_is_validated(tmp_path: Path) -> None:
    import shutil

    from rating.errors import RatingError
    catalog = load_catalog(REPO_ROOT / "facility_data")
    assert catalog.facility(FAC).unfunded_calls == "offer_one_call"
    assert {f.unfunded_calls for f in catalog.facilities if f.id != FAC} <= {"deny"}
    shutil.copytree(REPO_ROOT / "facility_data", tmp_path / "fd")
    path = tmp_path / "fd" / "facilities" / "FAC-07.toml"
    path.write_text(path.read_text().replace('"offer_one_call"', '"free_calls"'))
    try:
        load_catalog(tmp_path / "fd")
    except RatingError as exc:
        assert "unfunded_calls" in str(exc)
    else:
        raise AssertionError("an unknown unfunded_calls value was accepted")


async def _survivor(h: Any, a: Controller, tmp_path: Path, redis_url: str, gw: Any) -> Controller:
    b = Controller(replace(a.settings), redis_url=redis_url, clock=h.stack.clock, instance="ctl-b",
                   run_sync=False, names_dir=str(tmp_path / "names"), adopt_interval=0.05)
    await b.start()
    assert b.ctx is not None
    b.ctx.gateway = gw
    return b


def test_controller_killed_between_authorization_and_connect_releases_the_card(tmp_path: Path,
                                                                              redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url, instance="ctl-a") as h:
            sandbox = SandboxGateway(now=h.controller.clock.now)
            authorized = asyncio.Event()

            class Crashing:                 # the processor answers, then the controller dies
                def __getattr__(self, name: str) -> Any:
                    return getattr(sandbox, name)

                async def authorize(self, *args: Any) -> Any:
                    auth = await sandbox.authorize(*args)
                    authorized.set()
                    await asyncio.Event().wait()
                    return auth
            h.controller.ctx.gateway = Crashing()
            task = h.sim.start_call(FAC, "0701", extension="0701", handset=handset("3125550177"),
                                    recipient=pay())
            await asyncio.wait_for(authorized.wait(), 30)
            assert len(sandbox.outstanding()) == 1
            await _crash(h.controller)
            b = await _survivor(h, h.controller, tmp_path, redis_url, sandbox)
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
                await wait_for(lambda: _done(redis_url))
                assert sandbox.outstanding() == [] and sandbox.charged_cents() == 0
                [auth] = sandbox.auths.values()
                assert auth.state == "voided"
                # a second finish is a replay
                assert await money.finish_open(b.ctx) == 0 and sandbox.charged_cents() == 0
            finally:
                await b.stop()
    asyncio.run(go())


def test_controller_killed_between_hangup_and_capture_captures_once(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url, instance="ctl-a") as h:
            sandbox = SandboxGateway(now=h.controller.clock.now)
            capturing = asyncio.Event()

            class Crashing:                 # the call is settled, then the controller dies capturing
                def __getattr__(self, name: str) -> Any:
                    return getattr(sandbox, name)

                async def capture(self, *args: Any) -> None:
                    capturing.set()
                    await asyncio.Event().wait()
            h.controller.ctx.gateway = Crashing()
            task = h.sim.start_call(FAC, "0701", extension="0701", handset=handset("3125550177"),
                                    recipient=pay(talk=130))
            await asyncio.wait_for(capturing.wait(), 60)
            await _crash(h.controller)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
            rec = h.record_for(NEW)
            assert rec["outcome"] == "completed" and rec["amount"] > 0
            assert len(sandbox.outstanding()) == 1 and sandbox.charged_cents() == 0
            b = await _survivor(h, h.controller, tmp_path, redis_url, sandbox)
            try:
                await wait_for(lambda: _done(redis_url))
                assert sandbox.charged_cents() == rec["amount"] and sandbox.outstanding() == []
                bal = await h.ledger.balance(rec["account_id"])
                assert (bal.state, bal.posted, bal.held) == ("closed", 0, 0)
                await money.finish(b.ctx, rec["call_id"])           # replay: nothing more
                assert sandbox.charged_cents() == rec["amount"]
            finally:
                await b.stop()
    asyncio.run(go())


async def _done(redis_url: str) -> bool:
    return open_list(redis_url) == []
