"""`callcontrol demo` end to end (on the test redis-server and a fresh SQLite file), run twice."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from callcontrol.commands import demo_calls, run_demo
from tests.e2e_support import settings
from web.app import create_app
from web.services import WebConfig


def web_app(**config: object) -> object:
    return create_app(WebConfig(**config))  # type: ignore[arg-type]


def test_demo_tells_the_story_and_reruns(tmp_path: Path, redis_url: str) -> None:
    s = settings(tmp_path)
    for _ in range(2):                              # a re-run resets balances and blocks: same story
        out = io.StringIO()
        assert asyncio.run(run_demo(s, redis_url, scale=0.005, out=out, web_app=web_app)) == 0
        text = out.getvalue()
        rows = [line for line in text.splitlines() if line[:2].strip().isdigit()]
        assert len(rows) == len(demo_calls())
        outcomes = [row.split()[-5] if "completed" not in row else "completed" for row in rows]
        assert "completed" in outcomes
        for word in ("refused", "blocked", "blocked_recipient", "no_answer", "funds"):
            assert word in text, word
        assert "Account statements" in text and "Grandma Lee" in text
        assert "posted    $0.04" in text                # 30 c minus 3 minutes (26 c) when L() ended it
        # The families' side: a stored card, AutoReload after the first call crossed $5.00 (5.10 - 0.26),
        # one call paid by the recipient's card, the web app's sign-in and a deposit made through it.
        assert "Visa ...1111 stored" in text and "AutoReload on for +13125551234" in text
        assert sum("deposit stored-card" in line and "$25.00" in line for line in text.splitlines()) == 1
        paid = next(row for row in rows if "recipient pays" in row)
        assert "completed" in paid and "$0.00" not in paid
        assert "sign in: maria@example.com / password " in text
        assert "deposited $20.00 by the stored card into +13125551234" in text
        assert "running until Ctrl-C" not in text     # not a terminal: the demo ends by itself
