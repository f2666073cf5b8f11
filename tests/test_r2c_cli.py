"""`callcontrol holders r2c create|list|cancel` against real SQL and Redis: exit codes and what is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callcontrol.cli import main
from holders.sql import make_engine, migrate
from ledger.sql import migrate as ledger_migrate
from tests.r2c_support import holder_with

MARIA = "+13125551234"


@pytest.fixture
def holder(monkeypatch: pytest.MonkeyPatch, sql_url: str, redis_url: str) -> str:
    for name, value in (("REDIS_URL", redis_url), ("DATABASE_URL", sql_url)):
        monkeypatch.setenv("CALLCONTROL_" + name, value)
    monkeypatch.delenv("CALLCONTROL_CONFIG", raising=False)
    ledger_migrate(sql_url)
    migrate(sql_url)
    engine = make_engine(sql_url)
    try:
        return holder_with(engine, redis_url, "FAC-07", MARIA)
    finally:
        engine.dispose()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    rc = main(["holders", "r2c", *argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if rc == 0 else out


def test_create_list_cancel(holder: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, [made] = cli(capsys, "create", holder, "FAC-07", "1042", MARIA)
    assert rc == 0 and made["status"] == "pending" and made["number_e164"] == MARIA
    assert cli(capsys, "create", holder, "FAC-07", "1042", MARIA)[0] == 2       # one pending per inmate
    assert cli(capsys, "create", holder, "FAC-07", "1043", "+13125557781")[0] == 2   # not verified
    rc, found = cli(capsys, "list", holder, "--pending")
    assert rc == 0 and [r["request_id"] for r in found] == [made["request_id"]]
    rc, [gone] = cli(capsys, "cancel", made["request_id"])
    assert rc == 0 and gone["status"] == "cancelled"
    assert cli(capsys, "list", holder, "--pending") == (0, [])
    assert cli(capsys, "cancel", "r_nosuch")[0] == 1
