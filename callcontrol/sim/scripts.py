"""Scripted people: the inmate at the handset and the person called.

A script is a queue of actions consumed, in order, by the input-collecting AGI commands that run on the
person's channel (times are simulated seconds measured from the start of the consuming command):

* `Keys("1234")` (or a plain string): digits typed one by one; consumed by GET DATA, WAIT FOR DIGIT,
  RECORD FILE, and by STREAM FILE / SAY * / CONTROL STREAM FILE only when its first digit is one of that
  command's escape digits (a key nobody listens for is not consumed).
* `Interrupt("5", after=1.0)`: same as Keys, named for pressing during a prompt.
* `Record("#", after=1.5)`: the key that stops RECORD FILE (None = let it time out).
* `Timeout()` (or None): consumed by GET DATA / WAIT FOR DIGIT / RECORD FILE, which then time out.
* `HangUp(after=0.5)`: consumed by the next command of any kind; the person hangs up `after` seconds
  into it.
When the queue is empty, input commands time out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Keys:
    digits: str
    after: float = 0.5  # first key this long after the consuming command started
    gap: float = 0.25  # between keys


def Interrupt(digit: str, after: float = 1.0) -> Keys:
    return Keys(digit, after=after)


def Record(stop_key: str | None = "#", after: float = 1.5) -> Keys | Timeout:
    return Timeout() if stop_key is None else Keys(stop_key, after=after)


@dataclass(frozen=True)
class Timeout:
    pass


@dataclass(frozen=True)
class HangUp:
    after: float = 0.0


Action = Keys | Timeout | HangUp


def _coerce(item: object) -> Action:
    if item is None:
        return Timeout()
    if isinstance(item, str):
        return Keys(item)
    if isinstance(item, Keys | Timeout | HangUp):
        return item
    raise TypeError(f"not a script action: {item!r}")


class ActionQueue:
    """The remaining actions of one person, consumed by the commands on their channel."""

    def __init__(self, actions: Iterable[object] = ()) -> None:
        self._q: deque[Action] = deque(_coerce(a) for a in actions)
        self.consumed: list[tuple[str, Action]] = []

    def __len__(self) -> int:
        return len(self._q)

    def take_hangup(self, command: str) -> HangUp | None:
        if self._q and isinstance(self._q[0], HangUp):
            act = self._q.popleft()
            self.consumed.append((command, act))
            assert isinstance(act, HangUp)
            return act
        return None

    def take_input(self, command: str) -> Keys | Timeout:
        """For commands that wait for input: the next action (Timeout when none is left)."""
        if self._q and not isinstance(self._q[0], HangUp):
            act = self._q.popleft()
            self.consumed.append((command, act))
            assert not isinstance(act, HangUp)
            return act
        return Timeout()

    def take_interrupt(self, command: str, escape: str) -> Keys | None:
        """For prompts: the next Keys action only if its first key is an escape digit."""
        if (
            self._q
            and isinstance(self._q[0], Keys)
            and self._q[0].digits[:1]
            and self._q[0].digits[0] in escape
        ):
            act = self._q.popleft()
            self.consumed.append((command, act))
            assert isinstance(act, Keys)
            return act
        return None

    def push_front(self, act: Action) -> None:
        self._q.appendleft(act)


@dataclass
class Handset:
    """The inmate. `hangup_after`: hang up this many simulated seconds after the call was placed.
    `hangup_at_command`: hang up while the k-th AGI command (1-based) of the caller session runs."""

    actions: list[object] = field(default_factory=list)
    hangup_after: float | None = None
    hangup_at_command: int | None = None
    hangup_during_bridge: float | None = None  # hang up this long after the bridge starts


@dataclass
class Recipient:
    """The person called.

    `ring`: seconds of ringing before answering; `answer=False` rings until Dial's timeout (NOANSWER);
    `busy=True` returns BUSY after `ring`; `unavailable=True` gives CHANUNAVAIL at once.
    `keys`: pressed during the screening AGI (each key `key_delay` seconds into the first command that
    listens for it); `actions` gives a full script instead. `talk`: seconds on the line after the bridge
    starts before hanging up (None: stay until the other side or L() ends the call).
    `hangup_after_answer`: hang up that long after answering (e.g. during screening)."""

    number: str
    ring: float = 2.0
    answer: bool = True
    busy: bool = False
    unavailable: bool = False
    keys: str = ""
    key_delay: float = 1.5
    actions: list[object] | None = None
    talk: float | None = 30.0
    hangup_after_answer: float | None = None

    @property
    def exten(self) -> str:
        """The dialled extension: the number's digits (E.164 without '+')."""
        return "".join(ch for ch in self.number if ch.isdigit()) or self.number

    def script(self) -> ActionQueue:
        if self.actions is not None:
            return ActionQueue(self.actions)
        return ActionQueue(Keys(k, after=self.key_delay) for k in self.keys)
