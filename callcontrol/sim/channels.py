"""Simulated Asterisk channels: names, state, variables, the AMI snapshot block, hang-up signalling.

A hang-up has two phases, as in Asterisk: `soft_hangup()` marks the channel dead at once (a running AGI
command returns -1, media commands get 511) while `destroy()` happens when the channel's dialplan
thread ends (after the AGI socket closed); only then do the Hangup/Cdr events go out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callcontrol.sim.scripts import ActionQueue

if TYPE_CHECKING:
    from callcontrol.sim.world import Simulator

STATE_DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "No user responding",
    21: "Call Rejected",
    32: "Circuit/channel congestion",
    34: "Circuit/channel congestion",
}
UNKNOWN = "<unknown>"


def fmt_cdr_time(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def fmt_hms(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass(eq=False)
class Channel:
    sim: Simulator
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = 0
    cid_num: str = ""
    cid_name: str = ""
    conn_num: str = ""
    conn_name: str = ""
    language: str = "en"
    accountcode: str = ""
    vars: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    answered_at: float | None = None
    app: str = ""
    appdata: str = ""
    hangupcause: int = 0
    dead: bool = False
    destroyed: bool = False
    bridge_id: str = ""
    peer: Channel | None = None  # the other half of a Local pair
    script: ActionQueue = field(default_factory=ActionQueue)
    hangup_handlers: list[str] = field(default_factory=list)
    mixmonitor: list[str] = field(default_factory=list)
    stopped_mixmonitor: bool = False
    hangup_by: str = ""
    cdr_app: tuple[str, str] = ("", "")  # last application for the Cdr
    dnid: str = ""
    _hangup_fut: asyncio.Future[None] | None = None
    prompts: list[str] = field(default_factory=list)  # files played to this channel
    keys: list[str] = field(default_factory=list)  # DTMF this channel's person delivered
    recordings: list[str] = field(default_factory=list)  # RECORD FILE targets
    role: str = ""  # caller, callee, handset, recipient
    extra: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- state
    @property
    def state_desc(self) -> str:
        return STATE_DESC.get(self.state, "Unknown")

    def hangup_future(self) -> asyncio.Future[None]:
        if self._hangup_fut is None:
            self._hangup_fut = asyncio.get_running_loop().create_future()
            if self.dead:
                self._hangup_fut.set_result(None)
        return self._hangup_fut

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        """The channel block every channel event carries, keys optionally prefixed (Dest...)."""
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", self.state_desc),
            (f"{p}CallerIDNum", self.cid_num or UNKNOWN),
            (f"{p}CallerIDName", self.cid_name or UNKNOWN),
            (f"{p}ConnectedLineNum", self.conn_num or UNKNOWN),
            (f"{p}ConnectedLineName", self.conn_name or UNKNOWN),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.accountcode),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]

    def event(self, name: str, privilege: str, extra: list[tuple[str, str]] | None = None) -> None:
        bus = self.sim.events
        if not bus.listening:            # nobody logged in to AMI: count it, build nothing
            bus.count += 1
            return
        bus.emit(name, [("Privilege", privilege), *self.snapshot(), *(extra or [])])

    def set_state(self, state: int) -> None:
        if state != self.state:
            self.state = state
            self.event("Newstate", "call,all")

    def answer(self) -> bool:
        """Answer (state Up); False when it was already up."""
        if self.state == 6:
            return False
        self.answered_at = self.sim.clock.now()
        self.set_state(6)
        hook = self.extra.pop("on_answer", None)
        if hook is not None:
            hook()
        return True

    # ------------------------------------------------------------- variables
    def set_var(self, name: str, value: str, event: bool = True) -> None:
        if name.upper() == "CHANNEL(HANGUP_HANDLER_PUSH)":
            self.hangup_handlers.append(value.split(",")[0])
            return
        self.vars[name] = value
        if event:
            self.event("VarSet", "dialplan,all", [("Variable", name), ("Value", value)])

    def get_var(self, name: str) -> str | None:
        """A variable or a dialplan function the simulator knows; None when unset."""
        key = name.strip()
        if key in self.vars:
            return self.vars[key]
        up = key.upper()
        if up in _BUILTINS:
            return str(_builtin(self, up, self.sim.clock.now()))
        return self.sim.globals.get(key)

    # -------------------------------------------------------------- hang-up
    def soft_hangup(self, cause: int = 16, by: str = "") -> None:
        """Mark dead now; running waits end. Events come later from destroy()."""
        if self.dead:
            return
        self.dead = True
        self.hangupcause = cause or self.hangupcause
        self.hangup_by = self.hangup_by or by
        if by == "handset" and self.role == "caller":
            # The facility phone (the Local pair's ;1) hung up: Asterisk queues a hang-up on ;2 and says
            # so on AMI at once (ami-caller-hangup.txt), while the AGI on ;2 hears of it only when its
            # running command (EXEC Dial, with the recipient's screening inside) returns.
            self.event("HangupRequest", "call,all", [("Cause", str(self.hangupcause))])
        if self._hangup_fut is not None and not self._hangup_fut.done():
            self._hangup_fut.set_result(None)

    async def pause(self, seconds: float | None) -> bool:
        """Wait `seconds` of simulated time (None: forever); False if the channel hangs up first."""
        if self.dead:
            return False
        fut = self.hangup_future()
        if seconds is None:
            await asyncio.shield(fut)
            return False
        if seconds <= 0:
            return not self.dead
        sleeper = asyncio.ensure_future(self.sim.clock.sleep(seconds))
        try:
            await asyncio.wait({sleeper, fut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sleeper.done():
                sleeper.cancel()
        return not self.dead


_BUILTINS = frozenset({
    "CHANNEL", "CHANNEL(NAME)", "CHANNEL(STATE)", "CHANNEL(UNIQUEID)", "CHANNEL(LINKEDID)",
    "CHANNEL(LANGUAGE)", "UNIQUEID", "EXTEN", "CONTEXT", "PRIORITY", "HANGUPCAUSE", "CALLERID(NUM)",
    "CALLERID(NAME)", "CALLERID(ALL)", "CONNECTEDLINE(NUM)", "CONNECTEDLINE(NAME)", "CDR(DURATION)",
    "CDR(BILLSEC)", "CDR(START)", "CDR(UNIQUEID)", "EPOCH",
})


def _builtin(c: Channel, up: str, now: float) -> Any:
    """The dialplan functions and read-only variables the simulator answers (names in _BUILTINS)."""
    if up in ("CHANNEL", "CHANNEL(NAME)"):
        return c.name
    if up == "CHANNEL(STATE)":
        return c.state_desc
    if up in ("CHANNEL(UNIQUEID)", "UNIQUEID", "CDR(UNIQUEID)"):
        return c.uniqueid
    if up == "CHANNEL(LINKEDID)":
        return c.linkedid
    if up == "CHANNEL(LANGUAGE)":
        return c.language
    if up == "EXTEN":
        return c.exten
    if up == "CONTEXT":
        return c.context
    if up == "PRIORITY":
        return str(c.priority)
    if up == "HANGUPCAUSE":
        return str(c.hangupcause)
    if up == "CALLERID(NUM)":
        return c.cid_num
    if up == "CALLERID(NAME)":
        return c.cid_name
    if up == "CALLERID(ALL)":
        return f'"{c.cid_name}" <{c.cid_num}>'
    if up == "CONNECTEDLINE(NUM)":
        return c.conn_num
    if up == "CONNECTEDLINE(NAME)":
        return c.conn_name
    if up == "CDR(DURATION)":
        return str(int(now - c.created))
    if up == "CDR(BILLSEC)":
        return str(int(now - c.answered_at)) if c.answered_at else "0"
    if up == "CDR(START)":
        return fmt_cdr_time(c.created)
    return str(int(now))  # EPOCH
