"""Digit collection after prompts, as Asterisk's getdata does it (GET DATA, the Read() application).

Any key interrupts the prompts and counts as the first digit; then digits are read until `maxdigits`,
the `#` terminator (not kept) or a timeout measured from the end of the prompts, then from each key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callcontrol.sim.scripts import Keys

if TYPE_CHECKING:
    from callcontrol.sim.channels import Channel

COMPLETE = "complete"        # maxdigits reached, or a terminator after some digits
TERMINATED = "terminated"    # the terminator was the first key (nothing entered)
TIMEOUT = "timeout"
HANGUP = "hangup"


async def collect(chan: Channel, command: str, prompt_seconds: float, timeout: float,
                  maxdigits: int, terminator: str = "#") -> tuple[str, str]:
    """(digits, how): `how` is one of COMPLETE, TERMINATED, TIMEOUT, HANGUP. Consumes one input action."""
    act = chan.script.take_input(command)
    digits = act.digits if isinstance(act, Keys) else ""
    collected = ""
    now = 0.0
    prompt_end = prompt_seconds
    last: float | None = None
    for i, d in enumerate(digits):
        t = act.after + i * act.gap if isinstance(act, Keys) else 0.0
        if t > (max(prompt_end, last) if last is not None else prompt_end) + timeout:
            break
        if not await chan.pause(t - now):
            return collected, HANGUP
        now = t
        chan.keys.append(d)
        if d in terminator:
            return collected, COMPLETE if collected else TERMINATED
        collected += d
        prompt_end = min(prompt_end, t)
        last = t
        if len(collected) >= maxdigits:
            return collected, COMPLETE
    deadline = (max(prompt_end, last) if last is not None else prompt_end) + timeout
    if not await chan.pause(deadline - now):
        return collected, HANGUP
    return collected, TIMEOUT
