"""Debian's chromium (/usr/bin/chromium, installed by `scripts/bootstrap.sh --test-services`) driven
headless by Playwright for Python: Playwright talks to the system browser over its DevTools pipe, so no
browser download (`playwright install`) and no chromedriver version to match. A fresh user-data dir per
test; no network beyond loopback is used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 320, "height": 640}
DESKTOP = {"width": 1280, "height": 800}


@contextmanager
def chromium(pw: Playwright, user_data: Path, viewport: dict[str, int] = PHONE) -> Iterator[BrowserContext]:
    """A fresh browser on its own profile directory: a person of their own (cookies, storage)."""
    context = pw.chromium.launch_persistent_context(
        str(user_data), executable_path=CHROMIUM, headless=True, args=ARGS,
        viewport=viewport,  # type: ignore[arg-type]
        accept_downloads=True, locale="en-US")
    context.set_default_timeout(20_000)
    try:
        yield context
    finally:
        context.close()


def shot(context: BrowserContext, name: str) -> Path:
    """Save what the family sees now (full page) under tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    context.pages[0].screenshot(path=str(path), full_page=True)
    return path
