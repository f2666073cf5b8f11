"""How a code reaches a phone. Real SMS and voice channels come with the notifications issue; until then
the development sender writes the code to the log, in the one event (`dev_code`) the redactor lets a
code through. It is built only when the `holder_code_sender` setting says `dev`."""

from __future__ import annotations

from typing import Protocol

import structlog

CHANNELS = ("sms", "call")
log = structlog.get_logger()


class CodeSender(Protocol):
    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        """Send `code` to `number`; raise on failure (the code is then never usable)."""


class DevCodeSender:
    """Development only: the code goes to the log as `dev_code`."""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        log.warning("dev_code", number=number, channel=channel, language=language, dev_code=code)


def sender_for(name: str) -> CodeSender | None:
    """The sender a `holder_code_sender` setting names; empty: none (claims are refused)."""
    if name == "dev":
        return DevCodeSender()
    if name:
        raise ValueError(f"holder_code_sender: unknown sender {name!r} (only 'dev' for now)")
    return None
