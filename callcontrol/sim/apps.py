"""Dialplan applications the simulator knows, for EXEC and for its own dialplan steps.

`run()` returns the application's result (0 / -1) or None for an application Asterisk does not have
(EXEC then answers `200 result=-2`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
        return await handler(chan, data)

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
