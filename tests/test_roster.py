"""Rosters from the jail-management export: all-or-nothing CSV import with a bad-row report, PINs stored
only as hashes, and a running controller that picks up a new inmate and a release without a restart."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcontrol.cli import main
from callcontrol.commands import DEMO_START, Stack
from callcontrol.policy import check_pin_hash, hash_pin
from callcontrol.roster import store
from callcontrol.sim import Recipient
from ledger.sql import make_engine
from tests.e2e_support import SCALE, handset, seed, settings

HEADER = "inmate_id,name,language,active,allowed_numbers,pin_hash\n"
MARIA = "+13125551234"


def rows(url: str) -> list[tuple[str, str, bool, str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(
                store.inmates.c.inmate_id, store.inmates.c.name, store.inmates.c.active,
                store.inmates.c.allowed).order_by(store.inmates.c.inmate_id))]
    except sa.exc.OperationalError:
        return []
    except sa.exc.ProgrammingError:
        return []
    finally:
        engine.dispose()


def run_cli(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    monkeypatch.setenv("CALLCONTROL_DATABASE_URL", url)
    return main(list(argv))


def test_bad_rows_are_each_named_and_nothing_is_imported(
        tmp_path: Path, sql_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "2001,Ann Smith,en,1,3125551234;+13125559876,\n"     # fine
                   "20x2,Bob,en,1,,\n"                                           # line 3: id
                   "2003,,es,yes,,\n"                                            # line 4: name
                   "2004,Cy,en,maybe,312555,\n"                                  # line 5: active, number
                   "2001,Ann again,en,0,,\n"                                     # line 6: repeat
                   "2006,Dee,en,1,,plaintext1234\n")                             # line 7: not a hash
    assert run_cli(monkeypatch, sql_url, "roster", "import", "FAC-07", str(bad)) == 1
    err = capsys.readouterr().err
    for line, why in [(3, "inmate_id '20x2' is not 4 digits"), (4, "name is empty"),
                      (5, "active 'maybe'"), (5, "allowed number '312555'"), (6, "repeats line 2"),
                      (7, "pin_hash is not")]:
        assert any(f"line {line}:" in x and why in x for x in err.splitlines()), (line, why, err)
    assert "line 2:" not in err and "plaintext1234" not in err and "nothing imported" in err
    assert rows(sql_url) == []

    good = tmp_path / "good.csv"
    good.write_text(HEADER + "2001,Ann Smith,en,1,3125551234;+13125559876,\n2002,Bob,es,0,,\n")
    assert run_cli(monkeypatch, sql_url, "roster", "import", "FAC-07", str(good)) == 0
    assert rows(sql_url) == [("2001", "Ann Smith", True, "+13125551234;+13125559876"),
                             ("2002", "Bob", False, "")]


def test_set_pin_stores_only_a_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "2001,Ann Smith,en,1,,\n")
    assert run_cli(monkeypatch, url, "roster", "import", "FAC-07", str(good)) == 0
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "735911")
    assert run_cli(monkeypatch, url, "roster", "set-pin", "FAC-07", "2001") == 0
    assert run_cli(monkeypatch, url, "roster", "set-pin", "FAC-07", "9999") == 1     # not on the roster
    engine = make_engine(url)
    roster = store.load(engine, "FAC-07")
    engine.dispose()
    assert roster["2001"].pin_hash.startswith("scrypt$") and check_pin_hash("735911", roster["2001"].pin_hash)
    assert b"735911" not in (tmp_path / "r.sqlite3").read_bytes()


def test_a_running_controller_picks_up_an_import_and_a_release(tmp_path: Path, redis_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    store.migrate(url)
    engine = make_engine(url)

    def load(active: bool) -> None:
        row = store.Row("2050", "New Arrival", "en", active, (), hash_pin("4321"))
        store.import_rows(engine, "FAC-07", [row])

    async def go() -> None:
        stack = Stack(settings(tmp_path, roster_poll_seconds=1), redis_url, scale=SCALE, start_at=DEMO_START,
                      sql_url=url, run_sync=False, names_dir=str(tmp_path / "names"))
        await stack.start()
        try:
            await seed(stack.controller.ledger, MARIA, 500)

            async def call() -> bool:
                result = await stack.sim.place_call("FAC-07", "0701", extension="0701",
                                                    handset=handset("3125551234", pin="20504321"),
                                                    recipient=[Recipient(MARIA, keys="1", talk=10)])
                return result.bridged

            assert not await call()                     # not on any roster yet
            await asyncio.to_thread(load, True)
            await asyncio.sleep(1.5)                    # one poll
            assert await call()                         # imported: no restart
            await asyncio.to_thread(load, False)
            await asyncio.sleep(1.5)
            assert not await call()                     # released: the next call is refused
            # the TOML inmates are still there (SQL extends them)
            assert stack.controller.ctx.policy.facility("FAC-07").inmates["1042"].active
        finally:
            await stack.stop()
            engine.dispose()

    asyncio.run(go())
