"""Asterisk's AMI server side (loopback TCP), as captured from Asterisk 22 (AMI 11.0.0).

Actions answer first and act afterwards, so a Setvar's `Response` precedes its `VarSet` event and a
Hangup's `Channel Hungup` precedes the AGIExecEnd it causes, as in the captures. Switches for
reconnect tests: `refuse_logins`, `accepting`, `drop_all()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from callcontrol.sim import wire
from callcontrol.sim.channels import fmt_hms

if TYPE_CHECKING:
    from callcontrol.sim.world import Simulator

Pairs = list[tuple[str, str]]
SECURITY_EVENT_DELAY = 0.009  # security events reach the session ~10 ms late in the capture


def event_tv(epoch: float) -> str:
    ms = round((epoch - int(epoch)) * 1000)
    sec = int(epoch)
    if ms == 1000:
        sec, ms = sec + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}+0000"


class AmiSession:
    def __init__(self, server: AmiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.sim = server.sim
        self.reader = reader
        self.writer = writer
        self.authed = False
        self.user = ""
        self.events_on = False
        self.session_id = server.new_session_id()
        self.session_tv = ""
        sock = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        self.local = f"IPV4/TCP/{sock[0]}/{sock[1]}"
        self.remote = f"IPV4/TCP/{peer[0]}/{peer[1]}"

    # ------------------------------------------------------------------ io
    def send(self, pairs: Pairs) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.ami_message(pairs))

    def on_event(self, name: str, pairs: Pairs) -> None:
        self.send([("Event", name), *pairs])

    def respond(self, action_id: str | None, response: str, fields: Pairs) -> None:
        head = [("Response", response)] + ([("ActionID", action_id)] if action_id is not None else [])
        self.send(head + fields)

    async def run(self) -> None:
        self.writer.write(wire.AMI_BANNER)
        try:
            while True:
                raw = await self._read_message()
                if raw is None:
                    break
                msg = wire.parse_ami_message(raw)
                if not msg:
                    continue
                if not await self.dispatch(msg):
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.close()

    async def _read_message(self) -> bytes | None:
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                if lines:
                    return b"".join(lines)
                continue
            lines.append(line)

    def close(self) -> None:
        self.sim.events.unsubscribe(self.on_event)
        self.server.sessions.discard(self)
        if not self.writer.is_closing():
            self.writer.close()

    # ------------------------------------------------------------- actions
    async def dispatch(self, msg: Pairs) -> bool:
        action = (wire.header(msg, "Action") or "").strip()
        aid = wire.header(msg, "ActionID")
        name = action.lower()
        if not self.authed and name not in ("login", "challenge", "logoff"):
            self.respond(aid, "Error", [("Message", "Permission denied")])
            return True
        handler = getattr(self, "act_" + name, None)
        if handler is None:
            self.respond(
                aid,
                "Error",
                [
                    (
                        "Message",
                        f"Invalid/unknown command: {action}. Use Action: ListCommands "
                        "to show available commands.",
                    )
                ],
            )
            self._security_event_later("RequestBadFormat", "Error", [("RequestType", f"Action: {action}")])
            return True
        return bool(await handler(msg, aid))

    def _security_fields(self, name: str, severity: str, epoch: float) -> Pairs:
        return [
            ("Event", name),
            ("Privilege", "security,all"),
            ("EventTV", event_tv(epoch)),
            ("Severity", severity),
            ("Service", "AMI"),
            ("EventVersion", "1"),
        ]

    def _security_event_later(self, name: str, severity: str, extra: Pairs) -> None:
        epoch = self.sim.clock.now()

        async def later() -> None:
            await self.sim.clock.sleep(SECURITY_EVENT_DELAY)
            if self.events_on:
                self.send(
                    [
                        *self._security_fields(name, severity, epoch),
                        ("SessionID", self.session_id),
                        ("LocalAddress", self.local),
                        ("RemoteAddress", self.remote),
                        *extra,
                        ("SessionTV", self.session_tv),
                        ("AccountID", self.user),
                    ]
                )

        self.sim.spawn(later())

    async def act_login(self, msg: Pairs, aid: str | None) -> bool:
        user = wire.header(msg, "Username", "") or ""
        secret = wire.header(msg, "Secret", "") or ""
        cfg = self.sim.config
        if self.server.refuse_logins or user != cfg.ami_user or secret != cfg.ami_secret:
            await self.sim.clock.sleep(1.0)
            self.respond(aid, "Error", [("Message", "Authentication failed")])
            return False
        self.authed = True
        self.user = user
        now = self.sim.clock.now()
        self.session_tv = event_tv(now)
        events = (wire.header(msg, "Events", "on") or "on").strip().lower()
        self.events_on = events not in ("off", "no", "false", "0")
        self.respond(aid, "Success", [("Message", "Authentication accepted")])
        if self.events_on:
            uptime = str(int(now - self.sim.startup_time))
            self.send(
                [
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", uptime),
                    ("LastReload", uptime),
                    ("Status", "Fully Booted"),
                ]
            )
            self.send(
                [
                    *self._security_fields("SuccessfulAuth", "Informational", now),
                    ("AccountID", user),
                    ("SessionID", self.session_id),
                    ("LocalAddress", self.local),
                    ("RemoteAddress", self.remote),
                    ("UsingPassword", "0"),
                    ("SessionTV", self.session_tv),
                ]
            )
            self.sim.events.subscribe(self.on_event)
        return True

    async def act_logoff(self, msg: Pairs, aid: str | None) -> bool:
        self.respond(aid, "Goodbye", [("Message", "Thanks for all the fish.")])
        return False

    async def act_ping(self, msg: Pairs, aid: str | None) -> bool:
        self.respond(aid, "Success", [("Ping", "Pong"), ("Timestamp", f"{self.sim.clock.now():.6f}")])
        return True

    async def act_coresettings(self, msg: Pairs, aid: str | None) -> bool:
        self.respond(
            aid,
            "Success",
            [
                ("AMIversion", "11.0.0"),
                ("AsteriskVersion", wire.AGI_VERSION),
                ("SystemName", ""),
                ("CoreMaxCalls", "0"),
                ("CoreMaxLoadAvg", "0.000000"),
                ("CoreRunUser", ""),
                ("CoreRunGroup", ""),
                ("CoreMaxFilehandles", "0"),
                ("CoreRealTimeEnabled", "No"),
                ("CoreCDRenabled", "Yes"),
                ("CoreHTTPenabled", "No"),
                ("SoundsSearchCustomDir", "No"),
            ],
        )
        return True

    async def act_corestatus(self, msg: Pairs, aid: str | None) -> bool:
        start = self.sim.startup_time
        date = time.strftime("%Y-%m-%d", time.gmtime(start))
        clock = time.strftime("%H:%M:%S", time.gmtime(start))
        calls = sum(1 for c in self.sim.channels.values() if c.role == "caller")
        self.respond(
            aid,
            "Success",
            [
                ("CoreStartupDate", date),
                ("CoreStartupTime", clock),
                ("CoreReloadDate", date),
                ("CoreReloadTime", clock),
                ("CoreCurrentCalls", str(calls)),
                ("CoreProcessedCalls", str(self.sim.processed_calls)),
            ],
        )
        return True

    async def act_getvar(self, msg: Pairs, aid: str | None) -> bool:
        name = wire.header(msg, "Variable", "") or ""
        chan_name = wire.header(msg, "Channel")
        if chan_name:
            chan = self.sim.channels.get(chan_name)
            if chan is None:
                self.respond(aid, "Error", [("Message", "No such channel")])
                return True
            value = chan.get_var(name)
        else:
            value = self.sim.globals.get(name)
        self.respond(aid, "Success", [("Variable", name), ("Value", value or "")])
        return True

    async def act_setvar(self, msg: Pairs, aid: str | None) -> bool:
        name = wire.header(msg, "Variable", "") or ""
        value = wire.header(msg, "Value", "") or ""
        chan_name = wire.header(msg, "Channel")
        chan = self.sim.channels.get(chan_name) if chan_name else None
        if chan_name and chan is None:
            self.respond(aid, "Error", [("Message", "No such channel")])
            return True
        self.respond(aid, "Success", [("Message", "Variable Set")])
        if chan is not None:
            chan.set_var(name, value)
        else:
            self.sim.globals[name] = value
            self.sim.events.emit(
                "VarSet",
                [
                    ("Privilege", "dialplan,all"),
                    ("Channel", "none"),
                    ("Uniqueid", "none"),
                    ("Variable", name),
                    ("Value", value),
                ],
            )
        return True

    async def act_hangup(self, msg: Pairs, aid: str | None) -> bool:
        chan_name = wire.header(msg, "Channel", "") or ""
        chan = self.sim.channels.get(chan_name)
        if chan is None:
            self.respond(aid, "Error", [("Message", "No such channel")])
            return True
        cause = wire.header(msg, "Cause", "16") or "16"
        self.respond(aid, "Success", [("Message", "Channel Hungup")])
        self.sim.hangup_from_ami(chan, int(cause) if cause.isdigit() else 16)
        return True

    async def act_coreshowchannels(self, msg: Pairs, aid: str | None) -> bool:
        self.respond(aid, "Success", [("EventList", "start"), ("Message", "Channels will follow")])
        now = self.sim.clock.now()
        chans = [c for c in reversed(list(self.sim.channels.values())) if not c.destroyed]
        head = [("ActionID", aid)] if aid is not None else []
        for c in chans:
            self.send(
                [
                    ("Event", "CoreShowChannel"),
                    *head,
                    *c.snapshot(),
                    ("Application", c.app),
                    ("ApplicationData", c.appdata),
                    ("Duration", fmt_hms(now - c.created)),
                    ("BridgeId", c.bridge_id),
                ]
            )
        self.send(
            [
                ("Event", "CoreShowChannelsComplete"),
                *head,
                ("EventList", "Complete"),
                ("ListItems", str(len(chans))),
            ]
        )
        return True

    async def act_status(self, msg: Pairs, aid: str | None) -> bool:
        chan_name = wire.header(msg, "Channel")
        if chan_name:
            chan = self.sim.channels.get(chan_name)
            if chan is None:
                self.respond(aid, "Error", [("Message", "No such channel")])
                return True
            chans = [chan]
        else:
            chans = [c for c in self.sim.channels.values() if not c.destroyed]
        self.respond(aid, "Success", [("EventList", "start"), ("Message", "Channel status will follow")])
        now = self.sim.clock.now()
        tail = [("ActionID", aid)] if aid is not None else []
        for c in chans:
            self.send(
                [
                    ("Event", "Status"),
                    ("Privilege", "Call"),
                    *c.snapshot(),
                    ("Type", "Local"),
                    ("DNID", c.dnid),
                    ("EffectiveConnectedLineNum", c.conn_num or "<unknown>"),
                    ("EffectiveConnectedLineName", c.conn_name or "<unknown>"),
                    ("TimeToHangup", "0"),
                    ("BridgeID", c.bridge_id),
                    ("Application", c.app),
                    ("Data", c.appdata),
                    ("Nativeformats", "(slin)"),
                    ("Readformat", "slin"),
                    ("Readtrans", ""),
                    ("Writeformat", "slin"),
                    ("Writetrans", ""),
                    ("Callgroup", "0"),
                    ("Pickupgroup", "0"),
                    ("Seconds", str(int(now - c.created))),
                    *tail,
                ]
            )
        self.send(
            [
                ("Event", "StatusComplete"),
                *tail,
                ("EventList", "Complete"),
                ("ListItems", str(len(chans))),
                ("Items", str(len(chans))),
            ]
        )
        return True

    async def act_originate(self, msg: Pairs, aid: str | None) -> bool:
        channel = wire.header(msg, "Channel", "") or ""
        context = wire.header(msg, "Context", "") or ""
        exten = wire.header(msg, "Exten", "") or ""
        is_async = (wire.header(msg, "Async", "false") or "").lower() in ("true", "yes", "1")
        callerid = _parse_callerid(wire.header(msg, "CallerID"))
        variables = [tuple(v.split("=", 1)) for v in wire.headers_all(msg, "Variable") if "=" in v]
        channel_id = wire.header(msg, "ChannelId")
        tech, _, dest = channel.partition("/")
        dctx = dest.partition("@")[2]
        if tech != "Local" or not dctx:
            self.respond(aid, "Error", [("Message", "Originate failed")])
            return True
        exists = dctx in self.sim.dialplan
        if is_async:
            self.respond(aid, "Success", [("Message", "Originate successfully queued")])
        elif not exists:
            self.respond(aid, "Error", [("Message", "Originate failed")])
        outcome = await self.sim.originate(
            channel,
            context,
            exten,
            callerid=callerid,
            variables=[(k, v) for k, v in variables],
            channel_id=channel_id,
            action_id=aid if is_async else None,
            is_async=is_async,
        )
        if not is_async and exists:
            if outcome == "ok":
                self.respond(aid, "Success", [("Message", "Originate successfully queued")])
            else:
                self.respond(aid, "Error", [("Message", "Originate failed")])
        return True


def _parse_callerid(value: str | None) -> tuple[str, str] | None:
    """`"Name" <num>` -> (name, num)."""
    if not value:
        return None
    value = value.strip()
    if "<" in value and value.endswith(">"):
        name, _, num = value[:-1].partition("<")
        return name.strip().strip('"'), num.strip()
    return "", value


class AmiServer:
    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.sessions: set[AmiSession] = set()
        self.refuse_logins = False
        self.accepting = True
        self._server: asyncio.base_events.Server | None = None
        self._sid = 0x7F77E80011A0

    def new_session_id(self) -> str:
        sid = self._sid
        self._sid += 0x9F70
        return f"0x{sid:x}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        session = AmiSession(self, reader, writer)
        self.sessions.add(session)
        await session.run()

    def drop_all(self) -> None:
        """Close every AMI connection at once (the controller must reconnect)."""
        for s in list(self.sessions):
            s.close()

    async def stop(self) -> None:
        self.drop_all()
        for _ in range(3):  # let the session tasks see their EOF and end
            await asyncio.sleep(0)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
