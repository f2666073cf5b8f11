"""asterisk_conf/ contract: parsed with our own small config parser, then the dialplan contexts that carry
the safety rules are run step by step by a tiny interpreter (variables, $[...] expressions, IF, GotoIf,
ExecIf, Set, AGI/Dial as recorded calls), so the tests check what Asterisk would do, not just text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parent.parent / "asterisk_conf"


# --- config parser ----------------------------------------------------------------------------------------

def strip_comment(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            out.append(line[i + 1])
            i += 2
            continue
        if line[i] == ";":
            break
        out.append(line[i])
        i += 1
    return "".join(out).strip()


def parse_conf(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> ordered (key, value) pairs; '=>' and '=' both accepted, as Asterisk does."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = strip_comment(raw)
        if not line:
            continue
        m = re.match(r"^\[([^\]]+)\](\(.*\))?$", line)
        if m:
            current = m.group(1)
            assert current not in sections, f"{path.name}: duplicate section [{current}]"
            sections[current] = []
            continue
        assert current is not None, f"{path.name}: line outside a section: {raw!r}"
        key, sep, value = line.partition("=>") if "=>" in line else line.partition("=")
        assert sep, f"{path.name}: not a key/value line: {raw!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


@dataclass
class Step:
    priority: int
    label: str | None
    app: str
    args: str


def split_app(text: str) -> tuple[str, str]:
    m = re.match(r"^(\w+)\((.*)\)$", text.strip(), re.S)
    if m:
        return m.group(1), m.group(2)
    return text.strip(), ""


def parse_dialplan(path: Path) -> tuple[dict[str, str], dict[str, dict[str, list[Step]]], dict[str, list]]:
    """(globals, context -> extension -> steps, context -> other keys such as include)."""
    sections = parse_conf(path)
    globals_ = dict(sections.pop("globals", []))
    sections.pop("general", None)
    dialplan: dict[str, dict[str, list[Step]]] = {}
    others: dict[str, list] = {}
    for ctx, entries in sections.items():
        exts: dict[str, list[Step]] = {}
        last: str | None = None
        for key, value in entries:
            if key == "exten":
                pattern, prio, rest = value.split(",", 2)
                last = pattern.strip()
            elif key == "same":
                assert last is not None, f"[{ctx}] 'same' before any exten"
                prio, rest = value.split(",", 1)
            else:
                others.setdefault(ctx, []).append((key, value))
                continue
            prio = prio.strip()
            m = re.match(r"^(n|\d+)(?:\((\w+)\))?$", prio)
            assert m, f"[{ctx}] bad priority {prio!r}"
            steps = exts.setdefault(last, [])
            number = len(steps) + 1 if m.group(1) == "n" else int(m.group(1))
            assert number == len(steps) + 1, f"[{ctx}] {last}: priorities must run 1, n, n, ..."
            app, args = split_app(rest)
            steps.append(Step(number, m.group(2), app, args))
        dialplan[ctx] = exts
    return globals_, dialplan, others


# --- a tiny dialplan interpreter (only what our contexts use) ---------------------------------------------

def split_top(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on ``sep`` outside parentheses/brackets/braces."""
    parts, depth, buf = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0 and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def eval_expr(expr: str) -> str:
    tokens = re.findall(r'"[^"]*"|!=|=|&|\||[^\s"=!&|]+', expr)
    values = [t[1:-1] if t.startswith('"') else t for t in tokens]

    def compare(items: list[str]) -> bool:
        if len(items) == 1:
            return items[0] not in ("", "0")
        lhs, op, rhs = items
        return (lhs == rhs) if op == "=" else (lhs != rhs)

    def split_op(items: list[str], op: str) -> list[list[str]]:
        groups, cur = [], []
        for i, v in enumerate(items):
            if v == op and tokens[i] == op:
                groups.append(cur)
                cur = []
            else:
                cur.append(v)
        groups.append(cur)
        return groups

    result = any(all(compare(c) for c in split_op(g, "&")) for g in split_op(values, "|"))
    return "1" if result else "0"


@dataclass
class Channel:
    vars: dict[str, str]
    globals: dict[str, str]
    calls: list[tuple[str, str]] = field(default_factory=list)  # (app, expanded args)
    hangup_handlers: list[str] = field(default_factory=list)

    def get(self, name: str) -> str:
        m = re.match(r"^([A-Za-z_][\w]*)(?::(-?\d+)(?::(\d+))?)?$", name)
        assert m, f"unsupported variable reference {name!r}"
        value = self.vars.get(m.group(1), self.globals.get(m.group(1), ""))
        if m.group(2) is not None:
            start = int(m.group(2))
            value = value[start:start + int(m.group(3))] if m.group(3) else value[start:]
        return value

    def function(self, name: str, arg: str) -> str:
        if name == "IF":
            cond, _, branches = arg.partition("?")
            true, _, false = branches.partition(":")
            return true if cond.strip() not in ("", "0") else false
        if name == "TOUPPER":
            return arg.upper()
        if name == "FILTER":
            allowed, _, text = arg.partition(",")
            ok = set()
            for m in re.finditer(r"(.)-(.)|(.)", allowed):
                if m.group(3):
                    ok.add(m.group(3))
                else:
                    ok.update(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1))
            return "".join(c for c in text if c in ok)
        raise AssertionError(f"unsupported function {name}")

    def expand(self, text: str) -> str:
        while True:
            m = re.search(r"\$\{([^${}]*)\}", text) or re.search(r"\$\[([^$\[\]]*)\]", text)
            if not m:
                return text
            inner = m.group(1)
            if m.group(0).startswith("$["):
                value = eval_expr(inner)
            else:
                fm = re.match(r"^(\w+)\((.*)\)$", inner, re.S)
                value = self.function(fm.group(1), fm.group(2)) if fm else self.get(inner)
            text = text[:m.start()] + value + text[m.end():]


def match_pattern(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    rx = ""
    for tok in re.findall(r"\[[^\]]+\]|.", pattern[1:]):
        rx += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(
            tok, tok if tok.startswith("[") else re.escape(tok))
    return re.fullmatch(rx, exten) is not None


def find_exten(context: dict[str, list[Step]], exten: str) -> str | None:
    if exten in context:
        return exten
    matches = [p for p in context if match_pattern(p, exten)]
    # most specific first: no open-ended wildcard, then more literal characters
    matches.sort(key=lambda p: (("." in p) or ("!" in p), -len(p)))
    return matches[0] if matches else None


class Finished(Exception):
    def __init__(self, how: str, value: str = "") -> None:
        super().__init__(how)
        self.how, self.value = how, value


def run(dialplan, context: str, exten: str, chan: Channel, on_app=None, arg_vars=(), max_steps: int = 100):
    """Run from context/exten/1 until Hangup/Return/fall-through; returns (how, value, context, exten)."""
    for i, a in enumerate(arg_vars, 1):
        chan.vars[f"ARG{i}"] = a
    ctx_name, pattern = context, find_exten(dialplan[context], exten)
    assert pattern is not None, f"no extension matches {exten!r} in [{context}]"
    chan.vars["EXTEN"] = exten
    steps, pc = dialplan[ctx_name][pattern], 0
    for _ in range(max_steps):
        if pc >= len(steps):
            return "fallthrough", "", ctx_name, exten
        step = steps[pc]
        pc += 1
        app, args = step.app, step.args
        try:
            jump = execute(app, args, chan, on_app)
        except Finished as done:
            return done.how, done.value, ctx_name, exten
        if jump is None:
            continue
        if jump.count(",") == 2:  # context,exten,priority
            ctx_name, exten, _ = jump.split(",")
            ctx_name, exten = ctx_name.strip(), chan.expand(exten.strip())
            pattern = find_exten(dialplan[ctx_name], exten)
            assert pattern is not None, f"Goto to missing {ctx_name},{exten}"
            chan.vars["EXTEN"] = exten
            steps, pc = dialplan[ctx_name][pattern], 0
        else:
            labels = [s.label for s in steps]
            assert jump in labels, f"GotoIf to missing label {jump!r}"
            pc = labels.index(jump)
    raise AssertionError("dialplan did not finish (loop?)")


def execute(app: str, args: str, chan: Channel, on_app) -> str | None:
    if app == "GotoIf":
        cond, _, dest = args.partition("?")
        parts = split_top(dest, ":", 1)
        true, false = parts[0], (parts[1] if len(parts) > 1 else "")
        chosen = true if chan.expand(cond).strip() not in ("", "0") else false
        return chan.expand(chosen) or None
    if app == "ExecIf":
        cond, _, apps = args.partition("?")
        parts = [*split_top(apps, ":", 1), ""]
        chosen = parts[0] if chan.expand(cond).strip() not in ("", "0") else parts[1]
        if chosen:
            inner_app, inner_args = split_app(chosen)
            return execute(inner_app, inner_args, chan, on_app)
        return None
    if app == "Set":
        name, _, value = args.partition("=")
        name, value = chan.expand(name), chan.expand(value)
        if name == "CHANNEL(hangup_handler_push)":
            chan.hangup_handlers.append(value)
        else:
            chan.vars[name] = value
        return None
    if app in ("NoOp", "Answer", "Playback", "Busy", "Congestion", "Wait"):
        chan.calls.append((app, chan.expand(args)))
        return None
    if app == "Hangup":
        raise Finished("hangup", chan.expand(args))
    if app == "Return":
        raise Finished("return", chan.expand(args))
    if app in ("AGI", "Dial"):
        expanded = chan.expand(args)
        chan.calls.append((app, expanded))
        if on_app:
            on_app(app, split_top(expanded, ","), chan)
        return None
    raise AssertionError(f"interpreter does not know {app}")


# --- fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def conf():
    return parse_dialplan(CONF / "extensions.conf")


def new_channel(conf, **variables: str) -> Channel:
    return Channel(vars=dict(variables), globals=dict(conf[0]))


# --- structure --------------------------------------------------------------------------------------------

def test_contexts_and_globals(conf):
    globals_, dialplan, others = conf
    for ctx in ("facility-phones", "apc-hangup", "apc-outbound", "screen-sub", "deposit-line"):
        assert dialplan.get(ctx), f"missing or empty context [{ctx}]"
    assert globals_["CONTROLLER"] == "127.0.0.1:4573"
    assert "OUTBOUND_TRUNK" in globals_
    # Contexts are isolated: no context pulls in another (a phone must not reach apc-outbound directly).
    assert not any(k == "include" for entries in others.values() for k, _ in entries)


def all_steps(dialplan, ctx):
    return [s for steps in dialplan[ctx].values() for s in steps]


def test_every_agi_goes_to_the_controller_variable(conf):
    _, dialplan, _ = conf
    scripts = set()
    for ctx in dialplan:
        for step in all_steps(dialplan, ctx):
            if step.app == "AGI":
                url = split_top(step.args, ",")[0]
                m = re.match(r"^agi://\$\{CONTROLLER(_FALLBACK)?\}/([\w-]+)(\?.*)?$", url)
                assert m, f"[{ctx}] AGI must use agi://${{CONTROLLER}}/<script>: {url}"
                # only a new inmate call may go to the fallback (its controller is draining)
                assert not m.group(1) or m.group(2) == "inmate-call", url
                scripts.add(m.group(2))
    assert scripts == {"inmate-call", "screen", "hangup", "deposit", "alert"}


def test_dial_never_names_a_trunk_literally(conf):
    globals_, dialplan, _ = conf
    trunk = globals_["OUTBOUND_TRUNK"]
    for ctx in dialplan:
        for step in all_steps(dialplan, ctx):
            if step.app == "Dial":
                assert step.args.startswith("${"), f"[{ctx}] Dial target must come from a variable"
            if trunk and "OUTBOUND_TRUNK" not in step.args:
                assert trunk.split("/")[-1] not in step.args, f"[{ctx}] trunk name hard-coded: {step.args}"


# --- behaviour --------------------------------------------------------------------------------------------

def test_facility_phone_pushes_hangup_handler_before_the_agi(conf):
    _, dialplan, _ = conf
    chan = new_channel(conf)
    seen = []

    def on_app(app, args, ch):
        seen.append((app, args, list(ch.hangup_handlers)))

    how, *_ = run(dialplan, "facility-phones", "0712", chan, on_app)
    assert how == "hangup"
    assert [s[0] for s in seen] == ["AGI"]
    _, args, handlers_then = seen[0]
    assert handlers_then == ["apc-hangup,s,1"], "hangup handler must be pushed before the AGI runs"
    assert args == ["agi://127.0.0.1:4573/inmate-call?facility=FAC-07", "0712", "0712"]


def test_facility_phone_station_label_comes_from_the_endpoint(conf):
    _, dialplan, _ = conf
    chan = new_channel(conf, APC_STATION="FAC-07-HU-B-12")
    run(dialplan, "facility-phones", "0712", chan)
    agi = [a for app, a in chan.calls if app == "AGI"]
    assert agi == ["agi://127.0.0.1:4573/inmate-call?facility=FAC-07,0712,FAC-07-HU-B-12"]


def test_every_facility_phone_extension_sets_a_facility_and_pushes_the_handler_first(conf):
    _, dialplan, _ = conf
    for pattern, steps in dialplan["facility-phones"].items():
        apps = [s.app for s in steps]
        if "AGI" not in apps:
            continue
        first_agi = apps.index("AGI")
        pushes = [i for i, s in enumerate(steps) if "hangup_handler_push" in s.args]
        assert pushes and pushes[0] < first_agi, f"{pattern}: hangup handler not pushed before the AGI"
        assert re.search(r"/inmate-call\?facility=FAC-[\w-]+,\$\{EXTEN\},", steps[first_agi].args), pattern


def test_unknown_station_places_no_call(conf):
    _, dialplan, _ = conf
    chan = new_channel(conf)
    how, *_ = run(dialplan, "facility-phones", "5555", chan)
    assert how == "hangup"
    assert not [c for c in chan.calls if c[0] in ("AGI", "Dial")]


@pytest.mark.parametrize(("call_id", "settled", "expected"), [
    ("c-42", "", ["agi://127.0.0.1:4573/hangup?call_id=c-42"]),
    ("c-42", "0", ["agi://127.0.0.1:4573/hangup?call_id=c-42"]),
    ("c-42", "1", []),
    ("", "", []),
])
def test_hangup_handler_reports_the_call_id_and_returns(conf, call_id, settled, expected):
    _, dialplan, _ = conf
    chan = new_channel(conf, CALL_ID=call_id) if call_id else new_channel(conf)
    if settled:
        chan.vars["CALL_SETTLED"] = settled
    how, *_ = run(dialplan, "apc-hangup", "s", chan)
    assert how == "return"
    assert [a for app, a in chan.calls if app == "AGI"] == expected


def screen(conf, agi_status: str, sets: dict[str, str], inherited: dict[str, str] | None = None):
    _, dialplan, _ = conf
    chan = new_channel(conf, **(inherited or {}))

    def on_app(app, args, ch):
        assert args == ["agi://127.0.0.1:4573/screen?call_id=c-7"]
        ch.vars.update(sets)
        ch.vars["AGISTATUS"] = agi_status

    how, value, *_ = run(dialplan, "screen-sub", "s", chan, on_app, arg_vars=("c-7",))
    assert how == "return"
    return chan.vars.get("GOSUB_RESULT", ""), value


@pytest.mark.parametrize(("status", "sets", "inherited", "gosub_result"), [
    ("SUCCESS", {"SCREEN_RESULT": "ACCEPTED"}, None, ""),            # the only way to a bridge
    ("SUCCESS", {"SCREEN_RESULT": "accepted"}, None, ""),
    ("SUCCESS", {"GOSUB_RESULT": "BUSY"}, None, "BUSY"),             # refusal chosen by the controller
    ("SUCCESS", {}, None, "ABORT"),                                  # AGI ended without a decision
    ("SUCCESS", {}, {"SCREEN_RESULT": "ACCEPTED"}, "ABORT"),         # an inherited value does not count
    ("FAILURE", {}, None, "ABORT"),                                  # controller unreachable / crashed
    # An earlier prompt failed (AGISTATUS FAILURE), then the recipient accepted: ACCEPTED is the AGI's
    # last command, sent once the acceptance (billing start) is stored, so the call must bridge.
    ("FAILURE", {"SCREEN_RESULT": "ACCEPTED"}, None, ""),
    ("HANGUP", {}, None, "ABORT"),
    ("NOTFOUND", {}, None, "ABORT"),
])
def test_screen_sub_fails_closed(conf, status, sets, inherited, gosub_result):
    result, returned = screen(conf, status, sets, inherited)
    assert result == gosub_result
    if not gosub_result:
        assert returned.upper() == "ACCEPTED"


@pytest.mark.parametrize(("trunk", "dial"), [
    ("PJSIP/carrier", "PJSIP/15551234567@carrier"),
    ("IAX2/peer", "IAX2/peer/15551234567"),
    ("DAHDI/g0", "DAHDI/g0/15551234567"),
])
def test_outbound_dials_the_configured_trunk(conf, trunk, dial):
    _, dialplan, _ = conf
    chan = new_channel(conf, OUTBOUND_TRUNK=trunk)

    def on_app(app, args, ch):
        assert args[0] == dial
        ch.vars["DIALSTATUS"] = "ANSWER"

    how, *_ = run(dialplan, "apc-outbound", "15551234567", chan, on_app)
    assert how == "hangup"
    assert [a for app, a in chan.calls if app == "Dial"]


def test_outbound_passes_busy_back_and_refuses_without_a_trunk(conf):
    _, dialplan, _ = conf
    chan = new_channel(conf)
    run(dialplan, "apc-outbound", "15551234567", chan, lambda app, a, ch: ch.vars.update(DIALSTATUS="BUSY"))
    assert ("Busy", "10") in chan.calls

    chan = new_channel(conf, OUTBOUND_TRUNK="")
    how, cause, *_ = run(dialplan, "apc-outbound", "15551234567", chan)
    assert not [c for c in chan.calls if c[0] == "Dial"]
    assert (how, cause) == ("hangup", "34")


def test_deposit_line_and_carrier_inbound(conf):
    globals_, dialplan, _ = conf
    chan = new_channel(conf)
    run(dialplan, "deposit-line", "s", chan)
    assert [a for app, a in chan.calls if app == "AGI"] == ["agi://127.0.0.1:4573/deposit"]

    did = globals_["DEPOSIT_DID"]
    chan = new_channel(conf)
    _, _, ctx, _ = run(dialplan, "from-carrier", "+" + did, chan)
    assert ctx == "deposit-line"
    assert [a for app, a in chan.calls if app == "AGI"] == ["agi://127.0.0.1:4573/deposit"]

    chan = new_channel(conf)
    how, *_ = run(dialplan, "from-carrier", "15550001111", chan)
    assert how == "hangup" and not chan.calls


# --- the other files ----------------------------------------------------------------------------------

def test_manager_conf_is_loopback_and_least_privilege():
    sections = parse_conf(CONF / "manager.conf")
    general = dict(sections["general"])
    assert general["bindaddr"] == "127.0.0.1" and general["enabled"] == "yes"
    users = {k: dict(v) for k, v in sections.items() if k != "general"}
    assert len(users) == 1
    user = next(iter(users.values()))
    assert "CHANGE-ME" in user["secret"]
    assert user["permit"].startswith("127.0.0.1/")
    assert user["deny"] == "0.0.0.0/0.0.0.0"
    read = set(user["read"].split(","))
    write = set(user["write"].split(","))
    assert {"call", "cdr"} <= read
    assert not read & {"all", "agi", "dtmf", "dialplan", "system", "command"}, "digits would leak over AMI"
    assert {"call", "originate", "reporting"} <= write
    assert not write & {"all", "system", "command", "config"}


def test_logger_never_logs_dtmf():
    for channel, levels in parse_conf(CONF / "logger.conf")["logfiles"]:
        assert "dtmf" not in levels, f"{channel} would log keyed-in card numbers and PINs"


def test_modules_load_only_what_the_dialplan_and_controller_use():
    # autoload=no: an explicit list (a stock autoload logs ~65 warnings and errors at start; the
    # real-Asterisk tests check the start is clean). What the calls need must be on it.
    entries = parse_conf(CONF / "modules.conf")["modules"]
    assert ("autoload", "no") in entries
    loaded = {v.split(";")[0].strip() for k, v in entries if k == "load"}
    for needed in ("pbx_config.so", "res_agi.so", "app_dial.so", "app_stack.so", "app_read.so",
                   "app_playback.so", "app_mixmonitor.so", "app_exec.so", "func_channel.so", "func_logic.so",
                   "func_strings.so", "bridge_simple.so", "bridge_builtin_interval_features.so",
                   "format_wav.so", "cdr_manager.so", "chan_pjsip.so", "res_pjsip.so"):
        assert needed in loaded, needed
    assert "chan_iax2.so" not in loaded and not [k for k, _ in entries if k == "noload"]


def test_hold_classes_play_please_hold_for_each_language():
    # Issue #12: the inmate waits in Dial m(advancepay-hold-<lang>) while the recipient pays by card.
    from callcontrol.flows.inmate_call import HOLD_CLASS
    assert "res_musiconhold.so" in {v.split(";")[0].strip()
                                    for k, v in parse_conf(CONF / "modules.conf")["modules"] if k == "load"}
    conf = parse_conf(CONF / "musiconhold.conf")
    for lang in ("en", "es"):
        entries = dict(conf[f"{HOLD_CLASS}-{lang}"])
        assert entries["mode"] == "files"
        assert entries["directory"] == f"sounds/advancepay/hold/{lang}"    # under astdatadir, any layout
        folder = CONF.parent / "ivr_prompts" / "hold" / lang
        assert [p.name for p in folder.iterdir()] == ["please_hold.wav"]
        target = CONF.parent / "ivr_prompts" / lang / "please_hold.wav"
        assert (folder / "please_hold.wav").resolve() == target


def test_cdr_manager_enabled_and_pjsip_sample_is_inert():
    assert ("enabled", "yes") in parse_conf(CONF / "cdr_manager.conf")["general"]
    text = (CONF / "pjsip.conf").read_text(encoding="utf-8")
    assert not [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(";")]


def test_docker_files_use_real_settings_and_the_ami_user():
    from dataclasses import fields

    from callcontrol.platform.config import Settings

    names = {f.name.upper() for f in fields(Settings)}
    docker = CONF.parent / "docker"
    compose = (docker / "docker-compose.yml").read_text(encoding="utf-8")
    dockerfile = (docker / "Dockerfile").read_text(encoding="utf-8")
    used = set(re.findall(r"CALLCONTROL_([A-Z_]+)", compose + dockerfile))
    assert {"REDIS_URL", "DATABASE_URL", "AGI_BIND", "AGI_ALLOW", "AMI_HOST", "AMI_PORT", "AMI_USER",
            "AMI_SECRET"} <= used
    assert used <= names, f"unknown settings in docker/: {used - names}"
    assert "--appendonly" in compose
    ami_users = [k for k in parse_conf(CONF / "manager.conf") if k != "general"]
    assert f"AMI_USER:-{ami_users[0]}" in compose


@pytest.mark.parametrize(("choice", "lands_in"), [("deposit", "deposit-line"), ("", "apc-alerts")])
def test_alert_call_runs_the_alert_agi_then_the_deposit_line_on_1(conf, choice, lands_in):
    """[apc-alerts]: the controller's alert AGI speaks; APC_ALERT_CHOICE=deposit (1 pressed) goes on
    into the deposit line's own AGI, anything else hangs up. A stale choice from the originate is ignored."""
    _, dialplan, _ = conf
    chan = new_channel(conf, APC_ALERT_CHOICE="deposit")

    def agi(app, args, ch):
        if app == "AGI" and args[0].endswith("/alert"):
            ch.vars["APC_ALERT_CHOICE"] = choice

    how, _, ctx, _ = run(dialplan, "apc-alerts", "s", chan, on_app=agi)
    agis = [a for app, a in chan.calls if app == "AGI"]
    assert agis[0] == "agi://127.0.0.1:4573/alert"
    assert ctx == lands_in and how == "hangup"
    assert agis[1:] == (["agi://127.0.0.1:4573/deposit"] if choice else [])
