"""A tiny dialplan: contexts of extensions of (application, data) steps, with ${...} substitution.

Enough of Asterisk's pbx to emit the same Newexten/VarSet events and to run the few applications our
dialplans use (NoOp, Set, Answer, AGI, Dial, Hangup, Wait, WaitForCondition, ExecIf, Return). `{agi}` in
step data is replaced by the host:port shown in AGI URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callcontrol.sim.channels import Channel


@dataclass(frozen=True)
class Step:
    app: str
    data: str = ""


Extensions = dict[str, list[Step]]
Dialplan = dict[str, Extensions]

_VAR = re.compile(r"\$\{([^{}]*)\}")
_EXPR = re.compile(r'\$\[\s*"([^"]*)"\s*(!=|=)\s*"([^"]*)"\s*\]')


def substitute(text: str, chan: Channel, agi_host: str = "") -> str:
    """Replace ${VAR} / ${FUNC(arg)} and simple $["a" != "b"] expressions like Asterisk would."""
    out = text.replace("{agi}", agi_host) if agi_host else text
    for _ in range(5):
        new = _VAR.sub(lambda m: chan.get_var(m.group(1)) or "", out)
        if new == out:
            break
        out = new
    return _EXPR.sub(lambda m: "1" if (m.group(1) == m.group(3)) == (m.group(2) == "=") else "0", out)


def split_args(data: str) -> list[str]:
    """Comma-separated application arguments, parentheses kept together."""
    if "(" not in data:
        return data.split(",")
    args: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in data:
        if ch == "," and depth == 0:
            args.append("".join(cur))
            cur = []
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        cur.append(ch)
    args.append("".join(cur))
    return args


def exten_matches(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    rx = ""
    for ch in pattern[1:]:
        rx += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(ch, re.escape(ch))
    return re.fullmatch(rx, exten) is not None


def find_exten(dialplan: Dialplan, context: str, exten: str) -> list[Step] | None:
    ctx = dialplan.get(context)
    if ctx is None:
        return None
    if exten in ctx:
        return ctx[exten]
    for pat, steps in ctx.items():
        if exten_matches(pat, exten):
            return steps
    return None


def screening_sub(script: str, agi_args: str | None = None) -> list[Step]:
    """The U() subroutine run on the called channel: AGI, CONTINUE if the AGI failed, Return."""
    args = agi_args if agi_args is not None else "${ARG1},${ARG2},${ARG3},${ARG4}"
    url = f"agi://{{agi}}/{script}" + (f",{args}" if args else "")
    return [
        Step("NoOp", "Screening ${CHANNEL}, call from ${CALLERID(all)}"),
        Step("AGI", url),
        Step("ExecIf", '$["${AGISTATUS}" != "SUCCESS"]?Set(GOSUB_RESULT=CONTINUE)'),
        Step("NoOp", "AGISTATUS=${AGISTATUS} SCREEN_RESULT=${SCREEN_RESULT} GOSUB_RESULT=${GOSUB_RESULT}"),
        Step("Return", "${SCREEN_RESULT}"),
    ]


def handset_sim_context() -> Extensions:
    """The capture harness's handset (the ;1 half of the facility phone): waits until hung up."""
    return {
        "talk": [
            Step("NoOp", "Handset ${CHANNEL} connected"),
            Step("WaitForCondition", '#,#["#{SEND_DIGITS}" != ""],600,0.1'),
        ]
    }


def transcript_dialplan() -> Dialplan:
    """The parts of the capture's extensions.conf the simulator runs as dialplan (tests/data/.../etc)."""

    def phone(ext: str, inmate: str, script: str) -> list[Step]:
        return [
            Step("NoOp", "Facility phone ${EXTEN} off-hook: ${CHANNEL}"),
            Step("Set", f"INMATE_ID={inmate}"),
            Step("AGI", f"agi://{{agi}}/{script}"),
            Step("NoOp", "AGI finished: AGISTATUS=${AGISTATUS}"),
            Step("Hangup", ""),
        ]

    done = (
        "Dial done: DIALSTATUS=${DIALSTATUS} ANSWEREDTIME=${ANSWEREDTIME} DIALEDTIME=${DIALEDTIME} "
        "ANSWEREDTIME_MS=${ANSWEREDTIME_MS} DIALEDTIME_MS=${DIALEDTIME_MS}"
    )
    return {
        "facility-phones": {
            "101": phone("101", "INM-0101", "caller-hangup"),
            "102": phone("102", "INM-0102", "hold"),
            "103": [
                Step("NoOp", "Facility phone ${EXTEN} off-hook: ${CHANNEL}"),
                Step("Answer", ""),
                Step("Set", "INMATE_ID=INM-0103"),
                Step("Dial", "Local/5559000@recipient-sim,30,U(accept-sub)L(10000:5000)"),
                Step("NoOp", done),
                Step("Hangup", ""),
            ],
            "104": phone("104", "INM-0104", "caller-hangup-idle"),
            "105": [
                Step("NoOp", "Facility phone ${EXTEN} off-hook: ${CHANNEL}"),
                Step("Set", "INMATE_ID=INM-0105"),
                Step("Dial", "Local/5551234@recipient-sim,30,U(accept-sub)g"),
                Step("NoOp", done),
                Step("Hangup", ""),
            ],
        },
        "handset-sim": handset_sim_context(),
        "accept-sub": {"s": screening_sub("accept", "${CALLERID(num)}")},
    }


def production_dialplan(subroutines: dict[str, str] | None = None) -> Dialplan:
    """Subroutine contexts of the production dialplan (facility-phones extensions are built per call)."""
    subs = subroutines if subroutines is not None else {"screen-sub": "screen"}
    return {name: {"s": screening_sub(script)} for name, script in subs.items()}


def alert_dialplan() -> Dialplan:
    """The shipped [apc-outbound], [apc-alerts] and [deposit-line] (asterisk_conf/extensions.conf) in the
    simulator's terms, with OUTBOUND_TRUNK=Local: Dial(Local/<digits>) reaches the scripted Recipient of
    that number; the labels of [apc-outbound] become ExecIfs with the same outcomes (Busy, Congestion)."""
    return {
        "apc-outbound": {
            "_X.": [
                Step("Dial", "Local/${EXTEN},120"),
                Step("ExecIf", '$["${DIALSTATUS}" = "BUSY"]?Busy(10)'),
                Step("ExecIf", '$["${DIALSTATUS}" = "CONGESTION"]?Congestion(10)'),
                Step("ExecIf", '$["${DIALSTATUS}" = "CHANUNAVAIL"]?Congestion(10)'),
                Step("Hangup", ""),
            ]
        },
        "apc-alerts": {
            "s": [
                Step("Set", "APC_ALERT_CHOICE="),
                Step("AGI", "agi://{agi}/alert"),
                Step("GotoIf", '$["${APC_ALERT_CHOICE}" = "deposit"]?deposit-line,s,1'),
                Step("Hangup", ""),
            ]
        },
        "deposit-line": {
            "s": [Step("AGI", "agi://{agi}/deposit"), Step("Hangup", "")],
        },
    }
