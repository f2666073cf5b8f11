"""The data folder holds families' balances and phone numbers: owner-only (0700 folders, 0600 files)
even under umask 022, including what an older version created world-readable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(data: Path, *argv: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
    env |= {"CALLCONTROL_DATA_DIR": str(data), "CALLCONTROL_REDIS_URL": "", "CALLCONTROL_DATABASE_URL": ""}
    done = subprocess.run([sys.executable, "-m", "callcontrol.cli", *argv], cwd=REPO, env=env, umask=0o022,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def modes(root: Path) -> dict[str, str]:
    """Every folder and regular file under root (root included), as 'path: octal mode'."""
    out = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.is_file():
            out[str(path.relative_to(root))] = oct(stat.S_IMODE(path.stat().st_mode))
    return out


def owner_only(root: Path) -> dict[str, str]:
    """The entries whose mode is not 0700 (folders) or 0600 (files): empty when all is private."""
    return {k: v for k, v in modes(root).items()
            if v != ("0o700" if (root / k).is_dir() else "0o600")}


def test_a_new_data_folder_is_private(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    cli(data, "ledger", "open", "FAC-07", "+13125550100")      # embedded redis-server: AOF under data/redis
    cli(data, "ledger", "sync")                                # the SQLite file
    found = modes(data)
    assert any("appendonly" in k for k in found) and "ledger.sqlite3" in found, found
    assert owner_only(data) == {}, found
    assert oct(stat.S_IMODE((tmp_path / "new").stat().st_mode)) == "0o700"   # a parent it had to create


def test_an_older_world_readable_data_folder_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "ledger", "open", "FAC-07", "+13125550100")
    cli(data, "ledger", "sync")
    for path in [data, *data.rglob("*")]:                      # as an older version left them
        if path.is_dir() or path.is_file():
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert owner_only(data)
    cli(data, "ledger", "balance", "FAC-07:+13125550100")
    cli(data, "ledger", "sync")
    assert owner_only(data) == {}, modes(data)


def test_sqlite_wal_and_shm_files_follow_the_database_file(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from ledger.sql import make_engine

    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'made' / 'ledger.sqlite3'}")
        with engine.connect() as conn:                          # open: the -wal and -shm files exist
            conn.execute(sa.text("create table t (x integer)"))
            conn.commit()
            assert {"ledger.sqlite3-wal", "ledger.sqlite3-shm"} <= set(os.listdir(tmp_path / "made"))
            assert owner_only(tmp_path / "made") == {}, modes(tmp_path / "made")
        engine.dispose()
    finally:
        os.umask(old)
