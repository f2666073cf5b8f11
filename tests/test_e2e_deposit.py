"""End to end: the 800 deposit line through the simulated Asterisk over real TCP, the controller, a real
redis-server (and SQL through the sync worker), and the sandbox payment gateway."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import structlog
from sqlalchemy import select

from callcontrol.deposit import DepositLine
from callcontrol.platform.redis_server import EmbeddedRedis
from callcontrol.sim import Handset, HangUp, Keys, SimConfig
from ledger import Ledger
from ledger.keys import account_id_for
from payments.gateway import Authorization, GatewayError
from payments.saga import SOURCE
from payments.sandbox import SandboxGateway
from payments.trail import DEPOSIT_KEY
from tests.e2e_support import FAC, prompt_ids, running, seed

MARIA = "+13125551234"
NEW = "+13125557000"
VISA = "4111111111111111"
DECLINE = "4000000000000002"
EXPIRY = "1230"                  # December 2030; the simulated clock is in November 2026
CVV = "739"
YES = Keys("1", after=1.5)      # pressed once the read-back has played (not interrupting it)
DEPOSIT = "1"                    # the main menu's "make a deposit"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def caller(*, number: str = MARIA[2:], amount: str = "25", card: str = VISA, expiry: str = EXPIRY,
           cvv: str = CVV, before: list[object] | None = None, menu: list[object] | None = None,
           extra: list[object] | None = None, confirm: object = YES) -> Handset:
    """English, "1" make a deposit (main menu), number + "correct", [facility menu], amount, card, expiry,
    CVV, confirm."""
    actions: list[object] = ["1", DEPOSIT, *(before or []), f"{number}#", YES, *(menu or []), f"{amount}#",
                             f"{card}#", f"{expiry}#", f"{cvv}#", *(extra or []), confirm]
    return Handset(actions=actions)


def line(h: Any) -> DepositLine:
    route = h.controller.agi.routes["deposit"]
    assert isinstance(route, DepositLine)
    return route


@contextlib.asynccontextmanager
async def deposit_stack(tmp_path: Path, redis_url: str, gateway: Any = None) -> Any:
    """The e2e stack (no hang-up handler: the deposit dialplan pushes none) with a sandbox gateway."""
    async with running(tmp_path, redis_url, sim_config=SimConfig()) as h:
        line(h).gateway = gateway or SandboxGateway(now=h.controller.clock.now)
        yield h


async def deposit_call(h: Any, hs: Handset, *, facility: str | None = FAC,
                       channel_id: str | None = None) -> Any:
    return await h.sim.place_call(FAC, "deposit", extension="18004838314", handset=hs, script="deposit",
                                  query=f"facility={facility}" if facility else "", agi_args=[],
                                  channel_id=channel_id)


def heard(result: Any) -> list[str]:
    return prompt_ids(result.prompts)


def deposit_record(redis_url: str) -> list[dict[str, str]]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [r.hgetall(k) for k in r.scan_iter(DEPOSIT_KEY.format("*"))]
    finally:
        r.close()


@contextlib.contextmanager
def raw_logs() -> Iterator[io.StringIO]:
    """Every structlog event at debug level, rendered WITHOUT the redaction processor: what the code
    itself hands to the logger."""
    saved = structlog.get_config()
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=repr)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=out), cache_logger_on_first_use=False)
    try:
        yield out
    finally:
        structlog.configure(**saved)


def dump_redis(url: str) -> str:
    r = redis.Redis.from_url(url)
    parts: list[str] = []
    try:
        for key in r.scan_iter("*"):
            kind = r.type(key).decode()
            if kind == "string":
                value: Any = r.get(key)
            elif kind == "hash":
                value = r.hgetall(key)
            elif kind == "set":
                value = r.smembers(key)
            elif kind == "zset":
                value = r.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = r.xrange(key)
            else:
                value = r.dump(key)
            parts.append(f"{key!r}={value!r}")
    finally:
        r.close()
    return "\n".join(parts)


def absent(secret: str, text: str) -> bool:
    return re.search(rf"(?<!\d){secret}(?!\d)", text) is None


# --------------------------------------------------------------------------------------------------------


def test_deposit_to_existing_account_posts_exactly_once_and_stores_no_card_data(
        tmp_path: Path, redis_url: str) -> None:
    sql_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"

    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            with raw_logs() as logs:
                result = await deposit_call(h, caller(amount="25"))
            said = heard(result)
            assert said[:3] == ["deposit_welcome", "line_menu", "deposit_enter_number"]
            assert said[said.index("deposit_to_number") + 1:][:10] == [f"digit_{d}" for d in "3125551234"]
            assert "deposit_amount_is" in said and "deposit_confirm" in said
            tail = said[said.index("deposit_success"):]
            # 500 + 2500 = $30.00: "thirty dollars", then goodbye
            assert tail == ["deposit_success", "balance_is", "n_30", "dollars", "goodbye"]
            balance = await h.ledger.balance(account)
            assert (balance.posted, balance.available) == (3000, 3000)
            gw = line(h).gateway
            assert gw.charged_cents() == 2500 and gw.outstanding() == []
            [auth] = gw.auths.values()
            [rec] = deposit_record(redis_url)
            assert rec["state"] == "captured" and rec["last4"] == "1111" and rec["ref"] == auth.auth_id
            assert rec["amount"] == "2500" and rec["account"] == account
            # The statement, from SQL through the sync worker, shows where the money came from.
            from ledger.sql import make_engine, transfers
            from ledger.sync import SyncWorker

            def sync_and_read() -> tuple[list[Any], str]:
                worker = SyncWorker(redis_url, sql_url, partitions=h.controller.settings.ledger_partitions)
                try:
                    worker.drain()
                finally:
                    worker.close()
                engine = make_engine(sql_url)
                try:
                    with engine.connect() as conn:
                        rows = list(conn.execute(select(transfers).where(transfers.c.account_id == account)
                                                 .order_by(transfers.c.ver)).mappings())
                        from ledger.sql.schema import metadata
                        everything = "\n".join(repr(list(conn.execute(select(t))))
                                               for t in metadata.sorted_tables)
                finally:
                    engine.dispose()
                return rows, everything

            rows, sql_dump = await asyncio.to_thread(sync_and_read)
            dep = rows[-1]
            assert (dep["kind"], dep["amount"], dep["note"], dep["reference"]) == (
                "deposit", 2500, SOURCE, auth.auth_id)
            assert dep["posted_after"] == 3000
            # No card number, expiry or CVV in the logs, in Redis or in SQL.
            text = logs.getvalue()
            assert "deposit_posted" in text and '"last4": "1111"' in text      # the capture works
            stores = {"logs": text, "redis": dump_redis(redis_url), "sql": sql_dump}
            for where, content in stores.items():
                for secret in (VISA, CVV, EXPIRY):
                    assert absent(secret, content), f"{secret} found in {where}"
    run(go())


def test_first_deposit_opens_the_account_at_the_chosen_facility(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            facilities = [f.id for f in h.controller.ctx.catalog.facilities]
            assert len(facilities) >= 2
            assert await h.ledger.find_account(FAC, NEW) is None
            # No ?facility= and no account anywhere: the caller picks from every facility (key 1 = first).
            result = await deposit_call(h, caller(number=NEW[2:], amount="50", menu=[YES]), facility=None)
            said = heard(result)
            assert f"facility_{facilities[0]}" in said and f"facility_{facilities[1]}" in said
            assert "deposit_success" in said
            account = await h.ledger.find_account(facilities[0], NEW)
            assert account == account_id_for(facilities[0], NEW)
            balance = await h.ledger.balance(account)
            assert (balance.state, balance.posted) == ("active", 5000)
    run(go())


def test_number_with_accounts_at_two_facilities_gets_a_menu_of_those(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            a07 = await seed(h.ledger, MARIA, 100, facility="FAC-07")
            a22 = await seed(h.ledger, MARIA, 100, facility="FAC-22")
            result = await deposit_call(h, caller(amount="10", menu=[Keys("2", after=1.5)]), facility=None)
            said = heard(result)
            assert "facility_FAC-07" in said and "facility_FAC-22" in said and "facility_FAC-21" not in said
            assert "deposit_success" in said
            assert await h.posted(a07) == 100 and await h.posted(a22) == 1100
    run(go())


def test_a_relative_moved_to_another_facility_can_be_funded_there(tmp_path: Path, redis_url: str) -> None:
    # One account at FAC-07 must not send every deposit there: the menu offers it and "another facility";
    # the confirmation names the facility the money goes to.
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            a07 = await seed(h.ledger, MARIA, 100, facility="FAC-07")
            others = [f.id for f in h.controller.ctx.catalog.facilities if f.id != "FAC-07"]
            key = str(others.index("FAC-22") + 1)
            menu = [Keys("2", after=1.5), Keys(key, after=1.5)]       # another facility, then FAC-22
            result = await deposit_call(h, caller(amount="10", menu=menu), facility=None)
            said = heard(result)
            assert said.count("deposit_other_facility") == 1 and "facility_FAC-22" in said
            at = said.index("deposit_at")
            assert said[at + 1] == "facility_FAC-22" and said.index("deposit_confirm") > at
            assert "deposit_success" in said
            assert await h.posted(a07) == 100
            a22 = await h.ledger.find_account("FAC-22", MARIA)
            assert a22 is not None and await h.posted(a22) == 1000

            # Pressing 1 keeps the account the number already has.
            again = caller(amount="5", menu=[Keys("1", after=1.5)])
            said = heard(await deposit_call(h, again, facility=None))
            assert "deposit_success" in said and await h.posted(a07) == 600
    run(go())


def test_declined_card_posts_and_charges_nothing(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            result = await deposit_call(h, caller(card=DECLINE))
            assert heard(result)[-2:] == ["deposit_declined", "goodbye"]
            assert await h.posted(account) == 500
            gw = line(h).gateway
            assert gw.processed == 1 and gw.auths == {} and gw.charged_cents() == 0
            [rec] = deposit_record(redis_url)
            assert (rec["state"], rec["reason"], rec["last4"]) == ("declined", "card_declined", "0002")
    run(go())


def test_frozen_account_is_told_so_and_charged_nothing(tmp_path: Path, redis_url: str) -> None:
    # "Try again later" would never work for a frozen account: the family hears it is frozen.
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            await h.ledger.freeze("freeze-1", account, reason="chargeback")
            said = heard(await deposit_call(h, caller()))
            assert said[-2:] == ["deposit_account_frozen", "goodbye"] and "deposit_unavailable" not in said
            assert await h.posted(account) == 500 and line(h).gateway.processed == 0
    run(go())


def test_luhn_invalid_card_and_garbage_are_re_prompted(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            hs = Handset(actions=["1", DEPOSIT, "12#", f"{MARIA[2:]}#", YES, "**#", "25#",
                                  "4111111111111112#", f"{VISA}#", f"{EXPIRY}#", f"{CVV}#", YES])
            result = await deposit_call(h, hs)
            said = heard(result)
            assert said.count("deposit_enter_number") == 2 and "number_invalid" in said
            assert said.count("deposit_enter_amount") == 2
            assert said.count("deposit_enter_card") == 2
            assert "deposit_success" in said
            assert await h.posted(account) == 3000
            assert line(h).gateway.processed == 1         # the bad card never reached the gateway
    run(go())


def test_expired_card_is_refused_three_times_then_the_call_ends(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            hs = Handset(actions=["1", DEPOSIT, f"{MARIA[2:]}#", YES, "25#", f"{VISA}#",
                                  "1026#", "1026#", "1025#",                  # Oct 2026, Oct 2025: expired
                                  f"{CVV}#", YES])
            result = await deposit_call(h, hs)
            said = heard(result)
            assert said.count("deposit_enter_expiry") == 3
            assert "deposit_enter_cvv" not in said
            assert said[-1] == "goodbye"
            assert await h.posted(account) == 500
            assert line(h).gateway.processed == 0 and deposit_record(redis_url) == []
    run(go())


def test_amount_zero_and_over_the_maximum_are_refused(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            assert line(h).limits.max_cents == 30_000
            hs = caller(amount="0")
            hs.actions.insert(hs.actions.index("0#") + 1, "301#")
            hs.actions.insert(hs.actions.index("301#") + 1, "300#")
            result = await deposit_call(h, hs)
            said = heard(result)
            assert said.count("deposit_min_max") == 2 and said.count("deposit_enter_amount") == 3
            assert "deposit_success" in said
            assert await h.posted(account) == 500 + 30_000
    run(go())


def test_hang_up_before_confirming_charges_nothing(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            # During card entry, and at the very last moment: during the confirmation prompt.
            during_card = Handset(actions=["1", DEPOSIT, f"{MARIA[2:]}#", YES, "25#", HangUp(after=1.0)])
            at_confirm = caller(confirm=HangUp(after=0.5))
            for hs in (during_card, at_confirm):
                result = await deposit_call(h, hs)
                assert "deposit_success" not in heard(result)
            assert "deposit_enter_cvv" in heard(result)      # every card field given, then hung up
            await h.quiesce(0.1)
            assert await h.posted(account) == 500
            assert line(h).gateway.processed == 0 and deposit_record(redis_url) == []
            assert await h.ledger.find_account(FAC, NEW) is None
    run(go())


def test_cancel_at_confirmation_charges_nothing(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            result = await deposit_call(h, caller(number=NEW[2:], confirm=Keys("2", after=1.5)))
            assert heard(result)[-1] == "goodbye" and "deposit_success" not in heard(result)
            assert line(h).gateway.processed == 0
            assert await h.ledger.find_account(FAC, NEW) is None        # nothing opened either
    run(go())


class KillRedisAfterApproval(SandboxGateway):
    """Approves, then the ledger's Redis dies before the credit can be posted."""

    def __init__(self, server: EmbeddedRedis, **kw: Any) -> None:
        super().__init__(**kw)
        self.server = server

    async def authorize(self, *args: Any, **kw: Any) -> Authorization:
        auth = await super().authorize(*args, **kw)
        if auth.approved:
            await asyncio.to_thread(self.server.kill)
        return auth


def test_gateway_approved_but_ledger_down_voids_the_authorization(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="always").start()

    async def go() -> None:
        async with deposit_stack(tmp_path, server.url) as h:
            gw = KillRedisAfterApproval(server, now=h.controller.clock.now)
            line(h).gateway = gw
            account = await seed(h.ledger, MARIA, 500)
            result = await deposit_call(h, caller())
            said = heard(result)
            assert "deposit_success" not in said and "deposit_unavailable" in said
            [auth] = gw.auths.values()
            assert auth.state == "voided"
            assert gw.charged_cents() == 0 and gw.outstanding() == []
        server.start()                                  # Redis back: the account was never credited
        led = await Ledger.connect(server.url)
        try:
            assert (await led.balance(account)).posted == 500
        finally:
            await led.close()

    try:
        run(go())
    finally:
        server.stop()


class LosesFirstReply(SandboxGateway):
    """The first authorization goes through but its reply is lost (a timeout): the flow must retry
    with the same idempotency key and get the same authorization back."""

    lost = False

    async def authorize(self, *args: Any, **kw: Any) -> Authorization:
        auth = await super().authorize(*args, **kw)
        if not self.lost:
            self.lost = True
            raise GatewayError("reply lost")
        return auth


def test_same_idempotency_key_posts_once(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            gw = LosesFirstReply(now=h.controller.clock.now)
            line(h).gateway = gw
            account = await seed(h.ledger, MARIA, 500)
            first = await deposit_call(h, caller(), channel_id="1795536000.42")
            assert "deposit_success" in heard(first)
            assert gw.processed == 1 and len(gw.auths) == 1
            # The AGI is run again for the same channel (e.g. a failover re-run): same key, one posting.
            second = await deposit_call(h, caller(), channel_id="1795536000.42")
            assert "deposit_success" in heard(second)
            assert gw.processed == 1 and len(gw.auths) == 1 and gw.charged_cents() == 2500
            assert await h.posted(account) == 3000
            deposits = [e for e in await journal_ops(redis_url) if e == "deposit"]
            assert len(deposits) == 2              # the seed deposit and exactly one card deposit
    run(go())


class FreezesOnFirstApproval(SandboxGateway):
    """Approves; the first time, the account is frozen before the credit (the ledger refuses, the
    authorization is voided)."""

    def __init__(self, ledger: Any, account: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.ledger, self.account, self.done = ledger, account, False

    async def authorize(self, *args: Any, **kw: Any) -> Authorization:
        auth = await super().authorize(*args, **kw)
        if auth.approved and not self.done:
            self.done = True
            await self.ledger.freeze("freeze-1", self.account, reason="test")
        return auth


def test_re_run_after_a_void_charges_anew_and_never_credits_for_free(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            gw = FreezesOnFirstApproval(h.ledger, account, now=h.controller.clock.now)
            line(h).gateway = gw
            first = await deposit_call(h, caller(), channel_id="1795536000.55")
            assert "deposit_success" not in heard(first)
            [voided] = gw.auths.values()
            assert voided.state == "voided" and await h.posted(account) == 500
            await h.ledger.unfreeze("unfreeze-1", account)
            # The AGI re-run on the same channel: the voided attempt is closed, so a new authorization.
            second = await deposit_call(h, caller(), channel_id="1795536000.55")
            assert "deposit_success" in heard(second)
            assert gw.charged_cents() == 2500 and await h.posted(account) == 3000
            states = sorted(rec["state"] for rec in deposit_record(redis_url))
            assert states == ["captured", "voided"]
    run(go())


class AuthorizesButEveryReplyIsLost(SandboxGateway):
    """The processor authorizes, but no reply ever arrives (GatewayError every time)."""

    async def authorize(self, *args: Any, **kw: Any) -> Authorization:
        await super().authorize(*args, **kw)
        raise GatewayError("reply lost")


class AndVoidByKeyFails(AuthorizesButEveryReplyIsLost):
    async def void_by_key(self, idempotency_key: str) -> None:
        raise GatewayError("void reply lost")


def test_gateway_outcome_unknown_voids_by_key_or_says_nothing_untrue(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            gw = AuthorizesButEveryReplyIsLost(now=h.controller.clock.now)
            line(h).gateway = gw
            said = heard(await deposit_call(h, caller(), channel_id="1795536000.61"))
            # The hold the processor made is released by key: "not charged" is then true.
            assert said[-2:] == ["deposit_unavailable", "goodbye"]
            [auth] = gw.auths.values()
            assert auth.state == "voided" and gw.outstanding() == [] and await h.posted(account) == 500
            [rec] = deposit_record(redis_url)
            assert (rec["state"], rec["reason"]) == ("voided", "gateway_error")
            # The void by key cannot be confirmed either: the trail says unknown, the caller is not told
            # "you have not been charged" but that the payment could not be confirmed.
            stuck = AndVoidByKeyFails(now=h.controller.clock.now)
            line(h).gateway = stuck
            said = heard(await deposit_call(h, caller(), channel_id="1795536000.62"))
            assert "deposit_unavailable" not in said and "deposit_success" not in said
            assert said[-2:] == ["deposit_unconfirmed", "goodbye"]
            assert len(stuck.outstanding()) == 1 and await h.posted(account) == 500
            states = sorted(rec["state"] for rec in deposit_record(redis_url))
            assert states == ["unknown", "voided"]
    run(go())


class AuthorizesThenSlowReply(SandboxGateway):
    async def authorize(self, *args: Any, **kw: Any) -> Authorization:
        auth = await super().authorize(*args, **kw)      # the processor has authorized...
        await asyncio.sleep(2.5)                         # ...its reply outlasts the stop's grace
        return auth


def test_shutdown_during_a_charge_lets_the_charge_finish(tmp_path: Path, redis_url: str) -> None:
    box: dict[str, Any] = {}

    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            gw = box["gw"] = AuthorizesThenSlowReply(now=h.controller.clock.now)
            line(h).gateway = gw
            box["account"] = await seed(h.ledger, MARIA, 500)
            call = asyncio.ensure_future(deposit_call(h, caller()))
            for _ in range(400):
                await asyncio.sleep(0.05)
                if gw.processed:
                    break
            assert gw.processed == 1
        # the stack stopped while the gateway's reply was in flight
        call.cancel()
        with contextlib.suppress(BaseException):
            await call
        led = await Ledger.connect(redis_url)
        try:
            box["posted"] = (await led.balance(box["account"])).posted
        finally:
            await led.close()

    run(go())
    gw = box["gw"]
    assert gw.outstanding() == [] and gw.charged_cents() == 2500 and box["posted"] == 3000
    [rec] = deposit_record(redis_url)
    assert rec["state"] == "captured"


def test_a_later_run_never_rewrites_a_captured_trail(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with deposit_stack(tmp_path, redis_url) as h:
            account = await seed(h.ledger, MARIA, 500)
            first = await deposit_call(h, caller(), channel_id="1795536000.77")
            assert "deposit_success" in heard(first)
            [before] = deposit_record(redis_url)
            # The AGI re-run on the same channel with another card and amount: the key's request differs.
            second = await deposit_call(h, caller(card="5555555555554444", amount="30"),
                                        channel_id="1795536000.77")
            assert heard(second)[-2:] == ["deposit_unavailable", "goodbye"]
            [after] = deposit_record(redis_url)
            assert after == before and after["state"] == "captured" and after["amount"] == "2500"
            assert line(h).gateway.charged_cents() == 2500 and await h.posted(account) == 3000
    run(go())


async def journal_ops(url: str) -> list[str]:
    """Operation names of every journal entry (all partitions)."""
    from ledger.journal import decode

    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [decode(0, sid, fields["e"]).op for key in r.scan_iter("apc:*:journal")
                for sid, fields in r.xrange(key)]
    finally:
        r.close()
