"""The simulator's event bus: channel events fan out to logged-in AMI sessions (and test taps)."""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[str, list[tuple[str, str]]], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.count = 0

    @property
    def listening(self) -> bool:
        """Whether anyone listens (AMI sessions, taps): callers skip building events otherwise."""
        return bool(self._listeners)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, name: str, pairs: list[tuple[str, str]]) -> None:
        """Deliver `Event: name` with `pairs` (Privilege first, as Asterisk sends it)."""
        self.count += 1
        for listener in list(self._listeners):
            listener(name, pairs)
