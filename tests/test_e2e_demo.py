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
        # Request2Call: the last call heard the request and pressed 1; the holder's notices, delivered by
        # the notify worker to the demo's SMS webhook and SMTP server, as the family received them.
        assert 'heard "you have 1 call request", pressed 1: completed' in text
        assert "completed" in rows[-1] and "Request2Call" in rows[-1]
        notices = [line.split(None, 3) for line in text.splitlines() if line.startswith("  low balance")
                   or line.startswith("  Request2Call answered")]
        notices = [n if n[0] == "low" else ["r2c", *n[1:]] for n in notices]
        assert sorted((n[0], n[2].split()[0]) for n in notices) == [
            ("low", "email"), ("low", "sms"), ("r2c", "email"), ("r2c", "sms")]
        assert "the balance for +13125551234 is $4.93, under your $5.00 alert" in text   # 5.10 - 0.09 - 0.08
        assert "1042 at Cook Valley County Jail answered your call request" in text
        assert 'subject "Low balance"' in text and 'subject "Your call request"' in text
        assert_statements_add_up(text)


def _cents(money: str) -> int:
    sign = -1 if money.startswith("-") else 1
    dollars, cents = money.lstrip("-$").split(".")
    return sign * (int(dollars) * 100 + int(cents))


def assert_statements_add_up(text: str) -> None:
    """Every statement line: the previous balance plus its amount is its balance; the last is posted."""
    lines = text.split("Account statements", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    posted = balance = None
    for line in [*lines, "  +end posted $0.00"]:
        words = line.split()
        if words[0].startswith("+"):
            assert posted is None or balance is None or balance == posted, line
            posted, balance = _cents(words[words.index("posted") + 1]), None
        else:
            amount, after = _cents(words[-3]), _cents(words[-1])
            assert balance is None or balance + amount == after, line
            balance = after
