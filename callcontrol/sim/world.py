"""The simulated Asterisk: channels, Local pairs, a dialplan runner, scripted calls, AMI events.

`Simulator.place_call()` plays a facility phone going off-hook: it creates
`Local/<ext>@facility-phones-XXXXXXXX;1/;2`, runs the ;2 half's dialplan (NoOp, optional Set()s,
`AGI(agi://host:port/inmate-call?facility=F,<ext>,<station>)`, Hangup) against the controller's
FastAGI server and answers the controller's commands from the Handset script. Dial() reaches scripted
Recipients; U() opens a second FastAGI session on the called channel. Everything runs on one asyncio
loop (no threads), in simulated time (`callcontrol.platform.clock.Clock`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from callcontrol.platform.clock import Clock
from callcontrol.sim.agi_side import AgiSession
from callcontrol.sim.apps import Apps
from callcontrol.sim.channels import CAUSE_TXT, Channel, fmt_cdr_time
from callcontrol.sim.dialplan import Dialplan, Step, find_exten, production_dialplan, split_args, substitute
from callcontrol.sim.events import EventBus
from callcontrol.sim.results import AgiTranscript, CallResult, DialAttempt
from callcontrol.sim.scripts import ActionQueue, Handset, Recipient

DEFAULT_PROMPTS: dict[str, float] = {
    "beep": 0.44,
    "vm-intro": 5.66,
    "vm-youhave": 0.6,
    "queue-seconds": 0.6,
    **{f"digits/{n}": 0.8 for n in [*range(20), 30, 40, 50, 60, 70, 80, 90]},
    "digits/hundred": 0.5,
    "digits/thousand": 0.6,
}


@dataclass
class SimConfig:
    """Names and knobs of the simulated Asterisk (defaults: production dialplan names)."""

    agi_host: str | None = None  # host:port shown in agi_request; None: the controller's
    phones_context: str = "facility-phones"
    caller_script: str = "inmate-call"
    outbound_context: str = "apc-outbound"
    subroutines: dict[str, str] = field(default_factory=lambda: {"screen-sub": "screen"})
    hangup_handlers: dict[str, str] = field(default_factory=lambda: {"apc-hangup": "hangup"})
    hangup_agi: str | None = None  # e.g. "hangup": push this handler on every placed call
    handset_context: tuple[str, str] | None = None  # dialplan the ;1 (handset) half runs, for events
    prompts: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    known_prompts: set[str] | None = None  # if set, other prompts fail (-1 endpos=0)
    # if set, RECORD FILE into any other directory fails as Asterisk's does when it cannot create the
    # file (it never makes directories): 200 result=-1 (writefile)
    writable_dirs: set[str] | None = None
    default_prompt_seconds: float = 1.0
    answer_media_wait: float = 0.5
    uniqueid_start: int = 0
    local_seq_start: int = 0
    threadids: Iterable[int] | None = None
    seed: int | None = None
    ami_user: str = "ctl"
    ami_secret: str = "ctlsecret"
    startup_time: float | None = None  # epoch the simulated Asterisk "booted"
    dialplan: Dialplan | None = None  # extra contexts (e.g. dialplan.transcript_dialplan())


class Simulator:
    """One simulated Asterisk. Use `async with Simulator(controller=(host, port), clock=...)`.

    `controller` may be a list of addresses, as behind `hagi://` (DNS SRV): sessions are spread over them
    in turn, and one whose address refuses the connection goes to the next, as Asterisk does."""

    def __init__(
        self,
        controller: tuple[str, int] | list[tuple[str, int]] = ("127.0.0.1", 4573),
        *,
        clock: Clock | None = None,
        config: SimConfig | None = None,
        ami_port: int | None = 0,
    ) -> None:
        self.config = config or SimConfig()
        self.clock = clock or Clock()
        self.controllers = list(controller) if isinstance(controller, list) else [controller]
        self._turn = itertools.count()
        self.events = EventBus()
        self.apps = Apps(self)
        self.channels: dict[str, Channel] = {}
        self.globals: dict[str, str] = {}
        self.astdb: dict[tuple[str, str], str] = {}
        self.recipients: dict[str, Recipient] = {}
        self.dials: list[DialAttempt] = []  # every Dial attempt, in order (tests read it)
        self.originated: list[CallResult] = []  # every AMI Originate: its ;1 half's AGIs, prompts, keys
        self.rng = random.Random(self.config.seed)
        self.stats: Counter[str] = Counter()
        self.dialplan: Dialplan = {
            **production_dialplan(self.config.subroutines),
            **(self.config.dialplan or {}),
        }
        self._uid = itertools.count(self.config.uniqueid_start)
        self._seq = itertools.count(self.config.local_seq_start)
        self._threadids: Iterator[int] = (
            iter(self.config.threadids)
            if self.config.threadids is not None
            else itertools.count(140152822556352, 512 * 1024)
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.startup_time = (
            self.config.startup_time if self.config.startup_time is not None else self.clock.now()
        )
        self.processed_calls = 0
        self.ami_port = ami_port
        self.ami: Any = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> Simulator:
        if self.ami_port is not None:
            from callcontrol.sim.ami_side import AmiServer

            self.ami = AmiServer(self, port=self.ami_port)
            await self.ami.start()
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.ami is not None:
            await self.ami.stop()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --------------------------------------------------------------- naming
    @property
    def controller(self) -> tuple[str, int]:
        return self.controllers[0]

    @controller.setter
    def controller(self, address: tuple[str, int]) -> None:
        """Point Asterisk at one controller from now on (as an operator editing CONTROLLER would)."""
        self.controllers = [address]

    def controller_order(self) -> list[tuple[str, int]]:
        """The addresses a new FastAGI session tries, in order: the next one in turn first."""
        i = next(self._turn) % len(self.controllers)
        return self.controllers[i:] + self.controllers[:i]

    @property
    def agi_host(self) -> str:
        return self.config.agi_host or f"{self.controller[0]}:{self.controller[1]}"

    def next_threadid(self) -> int:
        return next(self._threadids)

    def new_uniqueid(self) -> str:
        return f"{int(self.clock.now())}.{next(self._uid)}"

    def new_bridge_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_local_pair(
        self,
        exten: str,
        context: str,
        *,
        caller: Channel | None = None,
        channel_id: str | None = None,
        events: bool = True,
    ) -> tuple[Channel, Channel]:
        """`Local/exten@context-XXXXXXXX;1` and `;2`, uniqueids from the global counter."""
        seq = next(self._seq)
        base = f"Local/{exten}@{context}-{seq:08x}"
        uid1, uid2 = self.new_uniqueid(), self.new_uniqueid()
        if channel_id:
            uid1, uid2 = channel_id, f"{channel_id};2"
        linked = caller.linkedid if caller is not None else uid1
        now = self.clock.now()
        one = Channel(self, f"{base};1", uid1, linked, context, exten, created=now, state=0)
        two = Channel(self, f"{base};2", uid2, linked, context, exten, created=now, state=4)
        one.peer, two.peer = two, one
        if caller is not None:
            for ch in (one, two):
                ch.cid_num, ch.cid_name = caller.cid_num, caller.cid_name
                ch.conn_num, ch.conn_name = caller.cid_num, caller.cid_name
        self.channels[one.name] = one
        self.channels[two.name] = two
        if events:
            one.event("Newchannel", "call,all")
            two.event("Newchannel", "call,all")
        return one, two

    # ------------------------------------------------------------- prompts
    def prompt_seconds(self, name: str) -> float | None:
        """Playback length of a prompt; None when the simulator is told it does not exist."""
        base = name.rsplit("/", 1)[-1]
        for key in (name, base):
            if key in self.config.prompts:
                return self.config.prompts[key]
        if (
            self.config.known_prompts is not None
            and name not in self.config.known_prompts
            and base not in self.config.known_prompts
        ):
            return None
        return self.config.default_prompt_seconds

    # ---------------------------------------------------------- recipients
    def add_recipient(self, recipient: Recipient) -> None:
        self.recipients[recipient.exten] = recipient

    def find_recipient(self, exten: str, context: str) -> Recipient | None:
        return self.recipients.get(exten)

    # -------------------------------------------------------------- hangups
    def schedule_hangup(self, chan: Channel, after: float, by: str) -> None:
        async def later() -> None:
            await self.clock.sleep(after)
            if not chan.dead:
                chan.soft_hangup(16, by)

        self.spawn(later())

    def soft_hangup_event(self, chan: Channel, cause: int) -> None:
        if not chan.extra.get("softhangup_sent"):
            chan.extra["softhangup_sent"] = True
            chan.event("SoftHangupRequest", "call,all", [("Cause", str(cause))])

    def hangup_from_ami(self, chan: Channel, cause: int = 16) -> None:
        chan.extra["ami_hangup_cause"] = cause
        chan.soft_hangup(cause, "ami")

    def _hangup_event(self, chan: Channel) -> None:
        cause = chan.hangupcause
        chan.event(
            "Hangup", "call,all", [("Cause", str(cause)), ("Cause-txt", CAUSE_TXT.get(cause, "Unknown"))]
        )

    def cdr_event(self, chan: Channel, disposition: str | None = None) -> None:
        now = self.clock.now()
        answered = chan.answered_at
        peer = chan.extra.get("cdr_peer", "")
        app, data = chan.cdr_app
        if disposition is None:
            disposition = "ANSWERED" if answered is not None else "NO ANSWER"
        caller_id = f'"{chan.cid_name}" <{chan.cid_num}>'
        self.events.emit(
            "Cdr",
            [
                ("Privilege", "cdr,all"),
                ("AccountCode", chan.accountcode),
                ("Source", chan.cid_num),
                ("Destination", chan.exten),
                ("DestinationContext", chan.context),
                ("CallerID", caller_id),
                ("Channel", chan.name),
                ("DestinationChannel", peer),
                ("LastApplication", app),
                ("LastData", data),
                ("StartTime", fmt_cdr_time(chan.created)),
                ("AnswerTime", fmt_cdr_time(answered)),
                ("EndTime", fmt_cdr_time(now)),
                ("Duration", str(int(now - chan.created))),
                ("BillableSeconds", str(int(now - answered)) if answered is not None else "0"),
                ("Disposition", disposition),
                ("AMAFlags", "DOCUMENTATION"),
                ("UniqueID", chan.uniqueid),
                ("UserField", ""),
            ],
        )

    def device_state(self, chan: Channel, state: str) -> None:
        device = chan.name.rsplit("-", 1)[0] if chan.name.startswith("Local/") else chan.name
        self.events.emit(
            "DeviceStateChange", [("Privilege", "call,all"), ("Device", device), ("State", state)]
        )

    def destroy_pair(self, two: Channel, one: Channel | None) -> None:
        """Tear a Local pair down after `two`'s dialplan ended: the events of a normal hang-up."""
        if two.destroyed:
            return
        two.destroyed = True
        if not two.dead:
            two.soft_hangup(16, two.hangup_by or "dialplan")
        if two.extra.get("ami_hangup_cause") is not None:
            self.soft_hangup_event(two, two.extra["ami_hangup_cause"])
        if one is not None and not one.destroyed:
            one.event("HangupRequest", "call,all", [("Cause", str(two.hangupcause))])
        self._hangup_event(two)
        self.cdr_event(two)
        self.channels.pop(two.name, None)
        if one is not None and not one.destroyed:
            one.destroyed = True
            one.hangupcause = two.hangupcause
            if one.extra.get("waiting_condition"):
                one.set_var("WAITFORCONDITIONSTATUS", "HANGUP")
            self.cdr_event(one)
            self.soft_hangup_event(one, one.hangupcause)
            one.soft_hangup(one.hangupcause, "peer")
            self._hangup_event(one)
            self.channels.pop(one.name, None)
            self.device_state(two, "NOT_INUSE")
            self.device_state(two, "NOT_INUSE")

    # ------------------------------------------------------------ dialplan
    async def run_steps(
        self,
        chan: Channel,
        steps: list[Step],
        start: int = 1,
        gosub_args: list[str] | None = None,
        transcripts: list[AgiTranscript] | None = None,
    ) -> str | None:
        """Run dialplan steps on `chan` from priority `start`; returns the Return() value if any."""
        if gosub_args is not None:
            chan.set_var("LOCAL(ARGC)", str(len(gosub_args)))
            for i, a in enumerate(gosub_args, 1):
                chan.vars[f"ARG{i}"] = a
        for prio in range(start, len(steps) + 1):
            if chan.dead:
                return None
            step = steps[prio - 1]
            chan.priority = prio
            data = substitute(step.data, chan, self.agi_host)
            chan.app, chan.appdata = step.app, data
            chan.event(
                "Newexten",
                "dialplan,all",
                [("Extension", chan.exten), ("Application", step.app), ("AppData", data)],
            )
            hook = chan.extra.pop("on_first_block", None)
            if hook is not None and step.app in ("AGI", "Answer", "Dial", "Wait", "WaitForCondition"):
                hook()
            elif hook is not None:
                chan.extra["on_first_block"] = hook
            app = step.app.lower()
            if app == "agi":
                chan.cdr_app = (step.app, data)
                parts = split_args(data)
                while len(parts) > 1 and parts[-1] == "":
                    parts.pop()
                session = AgiSession(self, chan, parts[0], parts[1:])
                if transcripts is not None:
                    transcripts.append(session.transcript)
                status = await session.run()
                chan.set_var("AGISTATUS", status)
            elif app == "return":
                chan.set_var("GOSUB_RETVAL", data)
                return data
            elif app == "execif":
                cond, _, rest = data.partition("?")
                if cond.strip() not in ("", "0") and "(" in rest:
                    inner_app, _, inner = rest.partition("(")
                    await self.apps.run(chan, inner_app, inner.rstrip(")"))
            elif app == "gotoif":
                # GotoIf(cond?context,exten,priority): only the three-part form, used to leave a context
                cond, _, dest = data.partition("?")
                where = dest.split(":")[0].split(",")
                target = find_exten(self.dialplan, where[0], where[1]) if len(where) == 3 else None
                if cond.strip() not in ("", "0") and target is not None:
                    chan.context, chan.exten = where[0], where[1]
                    return await self.run_steps(chan, target, int(where[2]), transcripts=transcripts)
            elif app == "waitforcondition":
                chan.cdr_app = (step.app, data)
                chan.extra["waiting_condition"] = True
                await chan.pause(None)
                return None
            else:
                if app == "hangup":
                    chan.extra["softhangup_sent"] = True
                await self.apps.run(chan, step.app, data)
        return None

    async def run_subroutine(self, callee: Channel, sub: str, args: list[str]) -> AgiTranscript | None:
        """U(sub^args) on the called channel: context `sub`, extension s; returns its AGI transcript."""
        steps = find_exten(self.dialplan, sub, "s")
        if steps is None:
            callee.set_var("GOSUB_RESULT", "ABORT")
            return None
        saved = (callee.context, callee.exten, callee.priority)
        callee.context, callee.exten = sub, "s"
        transcripts: list[AgiTranscript] = []
        await self.run_steps(callee, steps, gosub_args=args, transcripts=transcripts)
        callee.context, callee.exten, callee.priority = saved
        return transcripts[0] if transcripts else None

    async def run_hangup_handlers(self, chan: Channel, result: CallResult | None) -> None:
        for ctx in list(chan.hangup_handlers):
            script = self.config.hangup_handlers.get(ctx)
            if script is None:
                continue
            chan.context, chan.exten, chan.priority = ctx, "s", 1
            # Like the shipped [apc-hangup]: nothing without CALL_ID or with CALL_SETTLED=1, else
            # AGI(agi://${CONTROLLER}/hangup?call_id=${CALL_ID})
            call_id = chan.get_var("CALL_ID")
            if not call_id or chan.get_var("CALL_SETTLED") == "1":
                continue
            query = f"?call_id={call_id}"
            session = AgiSession(
                self, chan, f"agi://{self.agi_host}/{script}{query}", [], dead_from_start=True
            )
            await session.run()
            if result is not None:
                result.hangup_agi.append(session.transcript)
        chan.hangup_handlers.clear()

    # -------------------------------------------------------------- calls
    def start_call(
        self,
        facility: str = "FAC-1",
        station: str = "A-1",
        *,
        handset: Handset | None = None,
        recipient: Recipient | Iterable[Recipient] | None = None,
        extension: str = "100",
        caller_name: str | None = None,
        variables: dict[str, str] | None = None,
        script: str | None = None,
        query: str | None = None,
        agi_args: list[str] | None = None,
        hangup_agi: str | None = None,
        channel_id: str | None = None,
    ) -> asyncio.Task[CallResult]:
        """Place a call without waiting for it; the task's result is the CallResult."""
        if recipient is not None:
            for r in [recipient] if isinstance(recipient, Recipient) else recipient:
                self.add_recipient(r)
        handset = handset or Handset()
        script = script or self.config.caller_script
        query = f"facility={facility}" if query is None else query
        args = [extension, station] if agi_args is None else agi_args
        url = f"agi://{{agi}}/{script}" + (f"?{query}" if query else "")
        steps = [Step("NoOp", "Facility phone ${EXTEN} off-hook: ${CHANNEL}")]
        steps += [Step("Set", f"{k}={v}") for k, v in (variables or {}).items()]
        steps += [
            Step("AGI", ",".join([url, *args])),
            Step("NoOp", "AGI finished: AGISTATUS=${AGISTATUS} DIALSTATUS=${DIALSTATUS}"),
            Step("Hangup", ""),
        ]
        return self.spawn(
            self._call(
                steps,
                extension,
                handset,
                caller_name if caller_name is not None else f"{facility} {station}",
                hangup_agi or self.config.hangup_agi,
                channel_id,
            )
        )

    async def place_call(self, facility: str = "FAC-1", station: str = "A-1", **kw: Any) -> CallResult:
        """Place a call and wait until it is over (hang-up handlers included)."""
        return await self.start_call(facility, station, **kw)

    async def _call(
        self,
        steps: list[Step],
        extension: str,
        handset: Handset,
        caller_name: str,
        hangup_agi: str | None,
        channel_id: str | None,
    ) -> CallResult:
        ctx = self.config.phones_context
        one, two = self.new_local_pair(extension, ctx, channel_id=channel_id)
        two.role, one.role = "caller", "handset"
        result = CallResult(channel=two.name, uniqueid=two.uniqueid, placed_at=self.clock.now())
        two.extra["result"] = result
        two.extra["handset"] = handset
        two.script = ActionQueue(handset.actions)
        self._appdial2(one)
        self._set_callerid(one, two, extension, caller_name)
        self._wire_originate_hooks(one, two, None, None)
        if hangup_agi:
            two.hangup_handlers.append("hangup-handler")
            self.config.hangup_handlers.setdefault("hangup-handler", hangup_agi)
        if handset.hangup_after is not None:
            self.schedule_hangup(two, handset.hangup_after, "handset")
        self.stats["calls"] += 1
        transcripts: list[AgiTranscript] = []
        try:
            await self.run_steps(two, steps, transcripts=transcripts)
        finally:
            result.agi = transcripts[0] if transcripts else None
            result.agi_status = two.vars.get("AGISTATUS", "")
            two.soft_hangup(16, "dialplan")
            await self.run_hangup_handlers(two, result)
            self.destroy_pair(two, one)
            self.processed_calls += 1
            result.prompts = list(two.prompts)
            result.keys = list(two.keys)
            result.recordings = list(two.recordings)
            result.mixmonitor_files = list(two.mixmonitor)
            result.recorded = bool(two.mixmonitor)
            result.variables = dict(two.vars)
            result.hangup_by = two.hangup_by
            result.hangup_cause = two.hangupcause
            result.ended_at = self.clock.now()
        return result

    def _set_callerid(
        self, one: Channel, two: Channel, num: str, name: str, variables: list[tuple[str, str]] | None = None
    ) -> None:
        """The Originate sequence: VarSets and caller id on ;1, then on ;2, then LocalBridge."""
        for k, v in variables or []:
            one.set_var(k, v)
        one.cid_num, one.cid_name = num, name
        one.event("NewCallerid", "call,all", [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        one.conn_num, one.conn_name = num, name
        one.event("NewConnectedLine", "call,all")
        for k, v in variables or []:
            two.set_var(k, v)
        two.cid_num, two.cid_name = num, name
        two.conn_num, two.conn_name = num, name
        two.event("NewCallerid", "call,all", [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        two.event("NewConnectedLine", "call,all")
        self.events.emit(
            "LocalBridge",
            [
                ("Privilege", "call,all"),
                *one.snapshot("LocalOne"),
                *two.snapshot("LocalTwo"),
                ("Context", two.context),
                ("Exten", two.exten),
                ("LocalOptimization", "Yes"),
            ],
        )

    def _appdial2(self, one: Channel) -> None:
        one.app, one.appdata = "AppDial2", "(Outgoing Line)"
        one.cdr_app = ("AppDial2", "(Outgoing Line)")
        one.event(
            "Newexten",
            "dialplan,all",
            [("Extension", one.exten), ("Application", "AppDial2"), ("AppData", "(Outgoing Line)")],
        )

    def _wire_originate_hooks(
        self, one: Channel, two: Channel, action_id: str | None, target: tuple[str, str] | None,
        result: CallResult | None = None,
    ) -> None:
        """DialBegin when ;2 first blocks; on ;2's answer: ;1 goes up and runs the handset dialplan.
        An Originate's ;1 (`result` given) hears the party ;2's Dial reached (their keys are its keys),
        and when its dialplan ends the Local pair goes down with it."""
        dial_string = f"{two.exten}@{two.context}"

        def dial_begin() -> None:
            self.events.emit(
                "DialBegin", [("Privilege", "call,all"), *one.snapshot("Dest"), ("DialString", dial_string)]
            )

        def answered() -> None:
            self.device_state(two, "INUSE")
            ctx, exten = target if target is not None else (self.config.handset_context or ("", ""))
            if action_id is not None:
                self.events.emit(
                    "OriginateResponse",
                    [
                        ("Privilege", "call,all"),
                        ("ActionID", action_id),
                        ("Response", "Success"),
                        ("Channel", one.name),
                        ("Context", ctx),
                        ("Exten", exten),
                        ("Reason", "4"),
                        ("Uniqueid", one.uniqueid),
                        ("CallerIDNum", one.cid_num or "<unknown>"),
                        ("CallerIDName", one.cid_name or "<unknown>"),
                    ],
                )
            one.answer()
            self.events.emit(
                "DialEnd", [("Privilege", "call,all"), *one.snapshot("Dest"), ("DialStatus", "ANSWER")]
            )
            steps = find_exten(self.dialplan, ctx, exten) if ctx else None
            peer = two.extra.get("dial_peer")
            if result is not None and peer is not None:
                one.script = peer.script
            if steps is not None and result is not None:
                one.context, one.exten = ctx, exten
                one.extra["on_first_block"] = lambda: self.device_state(two, "INUSE")
                self.spawn(self._run_originated(one, two, steps, result))
            elif steps is not None:
                one.context, one.exten = ctx, exten
                one.extra["on_first_block"] = lambda: self.device_state(two, "INUSE")
                self.spawn(self.run_steps(one, steps))
            else:
                self.device_state(two, "INUSE")

        two.extra["on_first_block"] = dial_begin
        two.extra["on_answer"] = answered

    async def _run_originated(
        self, one: Channel, two: Channel, steps: list[Step], result: CallResult
    ) -> None:
        transcripts: list[AgiTranscript] = []
        result.answered_at = self.clock.now()
        try:
            await self.run_steps(one, steps, transcripts=transcripts)
        finally:
            result.agis = transcripts
            result.prompts = list(one.prompts)
            result.keys = list(one.keys)
            result.variables = dict(one.vars)
            if not two.dead:
                two.soft_hangup(16, "peer")

    # ------------------------------------------------------------ originate
    async def originate(
        self,
        channel: str,
        context: str,
        exten: str,
        *,
        callerid: tuple[str, str] | None,
        variables: list[tuple[str, str]],
        channel_id: str | None,
        action_id: str | None,
        is_async: bool,
    ) -> str:
        """AMI Originate of a Local channel: returns "ok", "no-exten" or "no-context"."""
        dest = channel.partition("/")[2]
        dexten, _, dctx = dest.partition("@")
        one, two = self.new_local_pair(dexten, dctx, channel_id=channel_id)
        steps = find_exten(self.dialplan, dctx, dexten)
        if steps is None:
            self._failed_originate(one, two, channel, context, exten, action_id, dctx in self.dialplan)
            return "no-exten" if dctx in self.dialplan else "no-context"
        self._appdial2(one)
        if callerid is not None:
            self._set_callerid(one, two, callerid[1], callerid[0], variables)
        else:
            for k, v in variables:
                one.set_var(k, v)
                two.set_var(k, v)
        result = CallResult(channel=one.name, uniqueid=one.uniqueid, placed_at=self.clock.now())
        self.originated.append(result)
        self._wire_originate_hooks(one, two, action_id, (context, exten), result)
        two.role, one.role = "caller", "handset"
        self.stats["calls"] += 1

        async def run() -> None:
            try:
                await self.run_steps(two, steps)
            finally:
                two.soft_hangup(16, "dialplan")
                await self.run_hangup_handlers(two, None)
                unanswered = one.answered_at is None
                self.destroy_pair(two, one)
                self.processed_calls += 1
                result.hangup_cause = two.hangupcause
                result.ended_at = self.clock.now()
                if unanswered and action_id is not None:
                    # Never answered: Asterisk's OriginateResponse gives the last control frame of the
                    # dialled leg: 5 busy, 8 congestion, else 3 (still ringing when it gave up).
                    reason = {17: "5", 34: "8"}.get(two.hangupcause, "3")
                    self.events.emit("OriginateResponse", [
                        ("Privilege", "call,all"), ("ActionID", action_id), ("Response", "Failure"),
                        ("Channel", channel), ("Context", context), ("Exten", exten), ("Reason", reason),
                        ("Uniqueid", "<unknown>"), ("CallerIDNum", "<unknown>"),
                        ("CallerIDName", "<unknown>")])

        self.spawn(run())
        return "ok"

    def _failed_originate(
        self,
        one: Channel,
        two: Channel,
        channel: str,
        context: str,
        exten: str,
        action_id: str | None,
        context_exists: bool,
    ) -> None:
        """The event order the capture shows for an Originate whose extension/context is missing."""
        for ch in (one, two):
            ch.destroyed = ch.dead = True
            self.channels.pop(ch.name, None)
        one.cdr_app = ("AppDial2", "(Outgoing Line)")

        def appdial() -> None:
            one.event(
                "Newexten",
                "dialplan,all",
                [("Extension", one.exten), ("Application", "AppDial2"), ("AppData", "(Outgoing Line)")],
            )

        if context_exists:
            self.cdr_event(two, "FAILED")
            appdial()
            self._hangup_event(two)
            self.device_state(two, "INVALID")
            if action_id is not None:
                self.events.emit(
                    "OriginateResponse",
                    [
                        ("Privilege", "call,all"),
                        ("ActionID", action_id),
                        ("Response", "Failure"),
                        ("Channel", channel),
                        ("Context", context),
                        ("Exten", exten),
                        ("Reason", "0"),
                        ("Uniqueid", "<unknown>"),
                        ("CallerIDNum", "<unknown>"),
                        ("CallerIDName", "<unknown>"),
                    ],
                )
            self.cdr_event(one, "FAILED")
            self._hangup_event(one)
            self.device_state(two, "INVALID")
        else:
            appdial()
            self.cdr_event(two, "FAILED")
            self._hangup_event(two)
            self.cdr_event(one, "FAILED")
            self._hangup_event(one)
            self.device_state(two, "INVALID")
            self.device_state(two, "INVALID")
