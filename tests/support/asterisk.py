"""A private, real Asterisk on loopback for the tests: our asterisk_conf/ with only site settings changed.

`find_asterisk()` asks scripts/asterisk.sh for a binary (ASTERISK_BIN, ASTERISK_SRC built once into a
cache outside the checkout, or `asterisk` on PATH). `AsteriskInstance` lays out a temp tree (etc, var,
spool, run, log), writes asterisk.conf for it, copies asterisk_conf/*.conf with the controller address,
the AMI port and secret and the outbound trunk changed, and adds a test-only dialplan (`[handset]` for the
inmate's handset, `[default]` for recipients) and a test-only AMI user that may see AGI events (which
carry the digits keyed in, so the production user never gets them). Calls are Local channels driven over
AMI, as ../shared/asterisk/README.md describes: there is no SIP in this build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from callcontrol.platform.config import REPO_ROOT

CONF_DIR = REPO_ROOT / "asterisk_conf"
SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
HARNESS_USER, HARNESS_SECRET = "harness", "harness-secret"
CONTROLLER_SECRET = "test-callcontrol-secret"
ENABLE_HINT = ("real-Asterisk tests skipped: set ASTERISK_SRC=<asterisk-22.x tarball> (built once into "
               "~/.cache/advancepay) or ASTERISK_BIN=<asterisk binary>, or put asterisk on PATH")

# Lines Asterisk logs at WARNING/ERROR that are expected in this harness, each with why.
KNOWN_LOG_LINES: tuple[tuple[str, str], ...] = (
    # The called channel hangs up while Dial's U() Gosub runs the screening on it (the recipient hung
    # up, or the controller hung up their leg because the inmate left): Asterisk unwinds the Gosub and
    # says so. Nothing to fix: that is how a screening ends early.
    (r"app_stack\.c: Local/[0-9]+@apc-outbound-[0-9a-f]+;1 Abnormal 'Gosub\(screen-sub,s,1\(",
     "called channel hung up during screening"),
    # A controller killed on purpose (the adoption test): Asterisk's AGI connection to it breaks.
    (r"res_agi\.c: (FastAGI|Connection).*(failed|refused|reset)|res_agi\.c: .*Broken pipe",
     "controller killed on purpose"),
)

TEST_DIALPLAN = """
; ---- test-only dialplan (tests/support/asterisk.py) ----
; The inmate's handset: the ;1 half of an originated Local/<station>@facility-phones. The harness puts
; keys into SEND_DIGITS with AMI Setvar when the controller's AGI starts a prompt that waits for them.
[handset]
exten => s,1,NoOp(handset ${CHANNEL})
 same => n(loop),WaitForCondition(#,#["#{SEND_DIGITS}" != ""],900,0.05)
 same => n,GotoIf($["${WAITFORCONDITIONSTATUS}" != "TRUE"]?done)
 same => n,Set(D=${SEND_DIGITS})
 same => n,Set(SEND_DIGITS=)
 same => n,SendDTMF(${D},100,120)
 same => n,Goto(loop)
 same => n(done),Hangup()

; Recipients: OUTBOUND_TRUNK=Local makes apc-outbound dial Local/<digits>, which lands here. The last
; two digits choose a behaviour: 98 never answers, 99 is busy, 97 is an unreachable carrier
; (congestion); anything else rings a second, answers and presses what the harness puts in SEND_DIGITS.
[default]
exten => _X.,1,NoOp(recipient ${EXTEN} ${CHANNEL})
 same => n,GotoIf($["${EXTEN:-2}" = "98"]?noanswer)
 same => n,GotoIf($["${EXTEN:-2}" = "99"]?busy)
 same => n,GotoIf($["${EXTEN:-2}" = "97"]?congestion)
 same => n,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n(loop),WaitForCondition(#,#["#{SEND_DIGITS}" != ""],900,0.05)
 same => n,GotoIf($["${WAITFORCONDITIONSTATUS}" != "TRUE"]?done)
 same => n,Set(D=${SEND_DIGITS})
 same => n,Set(SEND_DIGITS=)
 same => n,SendDTMF(${D},100,120)
 same => n,Goto(loop)
 same => n(done),Hangup()
 same => n(noanswer),Ringing()
 same => n,Wait(600)
 same => n,Hangup()
 same => n(busy),Busy(10)
 same => n,Hangup(17)
 same => n(congestion),Congestion(10)
 same => n,Hangup(34)
"""


def find_asterisk() -> str | None:
    """Path of the asterisk binary for the tests, building it first if ASTERISK_SRC asks for that."""
    script = REPO_ROOT / "scripts" / "asterisk.sh"
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=1800)
    if proc.returncode == 3:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/asterisk.sh failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def _set_global(text: str, name: str, value: str) -> str:
    new, n = re.subn(rf"(?m)^{name} ?= ?.*$", f"{name}={value}", text)
    assert n == 1, f"extensions.conf has no [globals] {name}"
    return new


def _set_key(text: str, key: str, value: str) -> str:
    new, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text, count=1)
    assert n == 1, f"no {key} in config"
    return new


class AsteriskInstance:
    """One private Asterisk process. `start()` waits until it is fully booted and AMI answers."""

    def __init__(self, binary: str, *, agi_port: int, ami_port: int, fallback_port: int | None = None,
                 prompts: Path = REPO_ROOT / "ivr_prompts", root: Path | None = None) -> None:
        self.binary = binary
        self.agi_port = agi_port
        self.fallback_port = fallback_port
        self.ami_port = ami_port
        self.root = root or Path(tempfile.mkdtemp(prefix="apc-ast-"))
        self.etc = self.root / "etc"
        self.log_dir = self.root / "log"
        self.spool = self.root / "spool"
        self.recording_dir = self.spool / "monitor" / "advancepay"
        self.prompts = prompts
        self.proc: subprocess.Popen[bytes] | None = None

    # --- layout -------------------------------------------------------------------------------------
    def _prefix(self) -> Path:
        """The install prefix of the binary (…/sbin/asterisk → …)."""
        return Path(self.binary).resolve().parent.parent

    def _moddir(self) -> Path:
        prefix = self._prefix()
        for candidate in (prefix / "lib" / "asterisk" / "modules", prefix / "lib64" / "asterisk" / "modules",
                          Path("/usr/lib/x86_64-linux-gnu/asterisk/modules"),
                          Path("/usr/lib/asterisk/modules")):
            if candidate.is_dir():
                return candidate
        raise FileNotFoundError(f"no Asterisk modules directory next to {self.binary}")

    def _datadir(self) -> Path:
        """astdatadir: the install's documentation and MOH, our prompts and the core sounds."""
        data = self.root / "data"
        (data / "sounds").mkdir(parents=True, exist_ok=True)
        installed = self._prefix() / "var" / "lib" / "asterisk"
        if not installed.is_dir():
            installed = Path("/usr/share/asterisk")
        for name in ("documentation", "moh", "keys", "images", "phoneprov", "static-http", "rest-api"):
            src = installed / name
            if src.exists() and not (data / name).exists():
                (data / name).symlink_to(src)
        if not (data / "moh").exists():
            (data / "moh").mkdir()
        if SOUNDS.is_dir():
            (data / "sounds" / "en").symlink_to(SOUNDS)
        (data / "sounds" / "advancepay").symlink_to(self.prompts.resolve())
        return data

    def layout(self) -> None:
        for sub in ("etc", "varlib", "spool", "run", "log", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.recording_dir / "names").mkdir(parents=True, exist_ok=True)
        data = self._datadir()
        r = self.root
        (self.etc / "asterisk.conf").write_text(
            "[directories]\n"
            f"astcachedir => {r / 'cache'}\nastetcdir => {self.etc}\nastmoddir => {self._moddir()}\n"
            f"astvarlibdir => {r / 'varlib'}\nastdbdir => {r / 'varlib'}\nastkeydir => {r / 'varlib'}\n"
            f"astdatadir => {data}\nastagidir => {data / 'agi-bin'}\nastspooldir => {self.spool}\n"
            f"astrundir => {r / 'run'}\nastlogdir => {self.log_dir}\n"
            f"astsbindir => {Path(self.binary).resolve().parent}\n"
            "[options]\nverbose = 3\ndebug = 0\ndocumentation_language = en_US\ndefaultlanguage = en\n"
        )
        for conf in CONF_DIR.glob("*.conf"):
            shutil.copy(conf, self.etc / conf.name)
        ext = (self.etc / "extensions.conf").read_text()
        ext = _set_global(ext, "CONTROLLER", f"127.0.0.1:{self.agi_port}")
        ext = _set_global(ext, "OUTBOUND_TRUNK", "Local")
        if self.fallback_port:
            ext = _set_global(ext, "CONTROLLER_FALLBACK", f"127.0.0.1:{self.fallback_port}")
        (self.etc / "extensions.conf").write_text(ext + "\n#include extensions_test.conf\n")
        (self.etc / "extensions_test.conf").write_text(TEST_DIALPLAN)
        mgr = (self.etc / "manager.conf").read_text()
        mgr = _set_key(mgr, "port", str(self.ami_port))
        mgr = _set_key(mgr, "secret", CONTROLLER_SECRET)
        mgr += (f"\n; test-only: the harness drives handsets and recipients and sees AGI events\n"
                f"[{HARNESS_USER}]\nsecret = {HARNESS_SECRET}\ndeny = 0.0.0.0/0.0.0.0\n"
                "permit = 127.0.0.1/255.255.255.255\nread = all\nwrite = all\nwritetimeout = 5000\n")
        (self.etc / "manager.conf").write_text(mgr)
        modules = (self.etc / "modules.conf").read_text()
        if not (self._moddir() / "chan_pjsip.so").exists():     # site setting: a build without pjproject
            modules = re.sub(r"(?s); --- SIP begin ---.*?; --- SIP end ---\n", "", modules)
        (self.etc / "modules.conf").write_text(modules)
        with open(self.etc / "modules.conf", "a") as fh:   # the test-only dialplan's handsets/recipients
            fh.write("\n; test-only\nload => app_senddtmf.so\nload => app_waitforcond.so\n")

    # --- process ------------------------------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        return [self.binary, "-C", str(self.etc / "asterisk.conf"), *args]

    def start(self, timeout: float = 60.0) -> AsteriskInstance:
        if not (self.etc / "asterisk.conf").exists():
            self.layout()
        out = open(self.log_dir / "console.out", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.command("-f", "-n", "-g"), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asterisk exited with {self.proc.returncode}: {self.console()[-3000:]}")
            res = subprocess.run(self.command("-rx", "core waitfullybooted"), capture_output=True, text=True,
                                 timeout=30)
            if res.returncode == 0 and "fully booted" in res.stdout.lower():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"asterisk did not boot in {timeout} s: {self.console()[-3000:]}")

    def rx(self, cmd: str) -> str:
        return subprocess.run(self.command("-rx", cmd), capture_output=True, text=True, timeout=30).stdout

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(self.command("-rx", "core stop now"), capture_output=True, timeout=30)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)

    # --- what it logged -----------------------------------------------------------------------------
    def console(self) -> str:
        path = self.log_dir / "console.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self) -> list[str]:
        path = self.log_dir / "messages.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def problems(self, known: tuple[tuple[str, str], ...] = KNOWN_LOG_LINES) -> list[str]:
        """WARNING/ERROR lines of messages.log outside the known, explained ones."""
        bad = []
        for line in self.messages():
            if " WARNING[" not in line and " ERROR[" not in line:
                continue
            if any(re.search(pattern, line) for pattern, _ in known):
                continue
            bad.append(line)
        return bad
