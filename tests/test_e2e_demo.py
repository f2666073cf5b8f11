"""`callcontrol demo` end to end (on the test redis-server and a fresh SQLite file), run twice."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from callcontrol.commands import demo_calls, run_demo
from tests.e2e_support import settings


def test_demo_tells_the_story_and_reruns(tmp_path: Path, redis_url: str) -> None:
    s = settings(tmp_path)
    for _ in range(2):                              # a re-run resets balances and blocks: same story
        out = io.StringIO()
        assert asyncio.run(run_demo(s, redis_url, scale=0.005, out=out)) == 0
        text = out.getvalue()
        rows = [line for line in text.splitlines() if line[:2].strip().isdigit()]
        assert len(rows) == len(demo_calls())
        outcomes = [row.split()[-5] if "completed" not in row else "completed" for row in rows]
        assert "completed" in outcomes
        for word in ("refused", "blocked", "blocked_recipient", "no_answer", "no_account", "funds"):
            assert word in text, word
        assert "Account statements" in text and "Grandma Lee" in text
        assert "posted    $0.04" in text                # 30 c minus 3 minutes (26 c) when L() ended it
