"""What a simulated call reports back to a test: both AGI transcripts, prompts, keys, dials, timings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgiTranscript:
    """One FastAGI session as bytes each way: (simulated seconds, '>>' Asterisk->controller or '<<', line).

    Writes are kept as sent (an env block is one chunk of ~25 lines) and split into lines only when
    asked: under load the simulator writes far more than anyone reads back."""

    script: str
    channel: str
    chunks: list[tuple[float, str, bytes]] = field(default_factory=list)
    status: str = ""  # AGISTATUS: SUCCESS, HANGUP, FAILURE

    @property
    def lines(self) -> list[tuple[float, str, bytes]]:
        return [(t, d, line) for t, d, data in self.chunks for line in data.splitlines(keepends=True)]

    def sent(self) -> list[bytes]:
        return [b for _, d, b in self.lines if d == ">>"]

    def received(self) -> list[bytes]:
        return [b for _, d, b in self.lines if d == "<<"]

    def commands(self) -> list[str]:
        return [b.decode(errors="replace").rstrip("\n") for b in self.received()]


@dataclass
class DialAttempt:
    target: str
    timeout: float | None
    options: str
    started: float
    ended: float | None = None
    status: str = ""  # DIALSTATUS
    answered_at: float | None = None  # callee answered
    bridge_start: float | None = None
    bridge_end: float | None = None
    # Dial joined a hung-up channel into a bridge and left it at once (a party hung up during U()):
    # BridgeEnter/BridgeLeave in the same instant, DIALSTATUS=ANSWER, no talk, bridge_start stays None.
    instant_bridge_at: float | None = None
    limit_ms: int | None = None
    warning_at: float | None = None  # simulated time the L() warning played
    warning_files: list[str] = field(default_factory=list)
    limit_hit: bool = False
    gosub_result: str | None = None
    gosub_retval: str | None = None
    callee_channel: str = ""
    screen: AgiTranscript | None = None
    recipient_prompts: list[str] = field(default_factory=list)
    recipient_keys: list[str] = field(default_factory=list)
    ended_by: str = ""  # recipient, caller, limit, gosub, timeout
    answeredtime_ms: int | None = None  # ANSWEREDTIME_MS Dial set on the caller
    dialedtime_ms: int | None = None  # DIALEDTIME_MS
    caller_channel: str = ""

    @property
    def talk(self) -> float:
        """Seconds the caller and the recipient were bridged (0 when they never were)."""
        if self.bridge_start is None or self.bridge_end is None:
            return 0.0
        return self.bridge_end - self.bridge_start


@dataclass
class CallResult:
    channel: str
    uniqueid: str
    placed_at: float
    agi: AgiTranscript | None = None
    hangup_agi: list[AgiTranscript] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # played to the handset
    keys: list[str] = field(default_factory=list)  # handset DTMF delivered to commands
    dials: list[DialAttempt] = field(default_factory=list)
    recorded: bool = False  # MixMonitor ran on the caller
    mixmonitor_files: list[str] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)  # RECORD FILE targets
    variables: dict[str, str] = field(default_factory=dict)  # caller channel variables at the end
    hangup_by: str = ""  # handset, recipient, controller, ami, limit
    hangup_cause: int = 0
    ended_at: float | None = None
    agi_status: str = ""
    agis: list[AgiTranscript] = field(default_factory=list)  # an Originate's ;1: every AGI it ran, in order
    answered_at: float | None = None  # an Originate's ;1 answered (its context started)

    @property
    def bridged(self) -> bool:
        return any(d.bridge_start is not None for d in self.dials)

    @property
    def last_dial(self) -> DialAttempt | None:
        return self.dials[-1] if self.dials else None

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.placed_at
