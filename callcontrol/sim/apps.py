"""Dialplan applications the simulator knows, for EXEC and for its own dialplan steps.

`run()` returns the application's result (0 / -1) or None for an application Asterisk does not have
(EXEC then answers `200 result=-2`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callcontrol.sim import dtmf
from callcontrol.sim.dialplan import split_args

if TYPE_CHECKING:
    from callcontrol.sim.channels import Channel
    from callcontrol.sim.world import Simulator


class Apps:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def run(self, chan: Channel, app: str, data: str) -> int | None:
        handler = getattr(self, "app_" + app.lower(), None)
        if handler is None:
            return None
        chan.cdr_app = (app, data)
        result: int | None = await handler(chan, data)
        return result

    async def app_noop(self, chan: Channel, data: str) -> int:
        return 0

    app_verbose = app_noop
    app_log = app_noop

    async def app_set(self, chan: Channel, data: str) -> int:
        name, _, value = data.partition("=")
        chan.set_var(name.strip(), value)
        return 0

    async def app_answer(self, chan: Channel, data: str) -> int:
        if chan.dead:
            return -1
        if chan.answer() and not await chan.pause(self.sim.config.answer_media_wait):
            return -1
        return 0

    async def app_hangup(self, chan: Channel, data: str) -> int:
        cause = int(data) if data.strip().isdigit() else 16
        chan.soft_hangup(cause, chan.hangup_by or "dialplan")
        return -1

    async def app_ringing(self, chan: Channel, data: str) -> int:
        return 0

    app_progress = app_ringing

    async def app_busy(self, chan: Channel, data: str) -> int:
        chan.soft_hangup(17, "dialplan")
        return -1

    async def app_congestion(self, chan: Channel, data: str) -> int:
        chan.soft_hangup(34, "dialplan")
        return -1

    async def app_wait(self, chan: Channel, data: str) -> int:
        try:
            seconds = float(data or 0)
        except ValueError:
            seconds = 0.0
        return 0 if await chan.pause(seconds) else -1

    async def app_playback(self, chan: Channel, data: str) -> int:
        files = split_args(data)[0].split("&") if data else []
        total = 0.0
        status = "SUCCESS"
        for f in files:
            seconds = self.sim.prompt_seconds(f)
            if seconds is None:
                status = "FAILED"
                continue
            chan.prompts.append(f)
            total += seconds
        ok = await chan.pause(total)
        chan.set_var("PLAYBACKSTATUS", status)
        return 0 if ok else -1

    async def app_read(self, chan: Channel, data: str) -> int:
        """Read(var,file1&file2,maxdigits,options,attempts,timeout): prompts any key interrupts, then
        digits until maxdigits, `#` or the timeout; sets var and READSTATUS (HANGUP on a hang-up); always 0.
        Between prompts Asterisk waits 50 ms for a first key; with no timeout given it waits the
        channel's response timeout (10 s) for the first key and 5 s between keys (modelled as 10 s)."""
        args = split_args(data) + [""] * 6
        var, files = args[0].strip(), [f for f in args[1].split("&") if f]
        maxdigits = int(args[2]) if args[2].strip().isdigit() and int(args[2]) > 0 else 255
        options = args[3]
        attempts = int(args[4]) if args[4].strip().isdigit() and int(args[4]) > 0 else 1
        try:
            timeout = float(args[5]) if args[5].strip() else 0.0
        except ValueError:
            timeout = 0.0
        if not var:
            chan.set_var("READSTATUS", "ERROR")
            return 0
        if chan.state != 6:
            if "s" in options:
                chan.set_var("READSTATUS", "SKIPPED")
                return 0
            if "n" not in options:
                chan.answer()
        played = [f for f in files if self.sim.prompt_seconds(f) is not None]
        seconds = sum(self.sim.prompt_seconds(f) or 0.0 for f in played) + 0.05 * max(0, len(played) - 1)
        digits, how = "", dtmf.TIMEOUT
        for _ in range(attempts):
            chan.prompts.extend(played)
            digits, how = await dtmf.collect(chan, f"EXEC Read {data}", seconds,
                                             timeout if timeout > 0 else 10.0, maxdigits)
            if digits or how in (dtmf.HANGUP, dtmf.TERMINATED):
                break
        chan.set_var(var, digits)
        status = {dtmf.HANGUP: "HANGUP", dtmf.TIMEOUT: "TIMEOUT"}.get(how, "OK")
        if chan.dead:
            status = "HANGUP"
        chan.set_var("READSTATUS", status)
        return 0          # also on a hang-up: real Read says so only in READSTATUS

    async def app_mixmonitor(self, chan: Channel, data: str) -> int:
        chan.mixmonitor.append(split_args(data)[0])
        chan.set_var("MIXMONITOR_FILENAME", split_args(data)[0])
        return 0

    async def app_stopmixmonitor(self, chan: Channel, data: str) -> int:
        chan.stopped_mixmonitor = True
        return 0

    async def app_dial(self, chan: Channel, data: str) -> int:
        from callcontrol.sim.dial import dial

        return await dial(self.sim, chan, data)
