"""Settings from environment variables and an optional TOML file.

Precedence: environment (CALLCONTROL_*) over the file named by CALLCONTROL_CONFIG over defaults.
Empty redis_url means "start an embedded redis-server"; empty database_url means SQLite under data_dir.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ledger.validate import check_max_amount

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PREFIX = "CALLCONTROL_"


@dataclass(frozen=True)
class Settings:
    redis_url: str = ""                      # empty: embedded redis-server under data_dir
    database_url: str = ""                   # empty: sqlite file under data_dir
    data_dir: Path = REPO_ROOT / "var"       # embedded Redis state (AOF), SQLite file, recordings
    facility_dir: Path = REPO_ROOT / "facility_data"
    agi_bind: str = "127.0.0.1:4573"
    agi_allow: tuple[str, ...] = ("127.0.0.1", "::1")   # FastAGI has no auth: peer address allow-list
    agi_reply_timeout: int = 10              # seconds for a reply Asterisk gives at once (GET VARIABLE...)
    agi_dial_grace: int = 150                # seconds an EXEC Dial may run past its ring timeout + L()
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = ""                       # empty: no AMI (watchdog hang-ups disabled)
    ami_secret: str = field(default="", repr=False)
    log_format: str = ""                     # json | console; empty: console on a tty, else json
    log_level: str = "info"
    ledger_partitions: int = 16              # journal partitions (one Redis Cluster slot each)
    max_amount: int = 100_000                # ceiling per ledger operation, in cents
    dial_template: str = "Local/{number}@apc-outbound"  # what EXEC Dial calls; {number} is E.164 digits
    ring_timeout: int = 30                   # seconds Dial lets the recipient ring
    recording_dir: str = "/var/spool/asterisk/monitor/advancepay"  # MixMonitor target, as Asterisk sees it
    payment_gateway: str = ""                # card processor: "sandbox" (dev), "authorizenet"; empty: none
    authorizenet_login_id: str = field(default="", repr=False)   # API login id
    authorizenet_transaction_key: str = field(default="", repr=False)
    authorizenet_url: str = "https://apitest.authorize.net/xml/v1/request.api"  # the sandbox endpoint
    authorizenet_timeout: int = 20           # seconds per request; no reply = outcome unknown (lookup)
    deposit_max_cents: int = 30_000          # per deposit; at least $50 must be accepted (47 CFR 64.6100)
    holder_code_sender: str = ""             # codes: "sms" (notify_sms_*); "dev" logs them (development)
    holder_code_secret: str = field(default="", repr=False)  # HMAC key of stored codes; empty: no codes
    metrics_bind: str = ""                   # host:port of /metrics, /healthz, /readyz; empty: off
    drain_seconds: int = 600                 # SIGTERM: how long calls in progress may run on before exit
    roster_poll_seconds: int = 5             # how often a controller looks for a newer SQL roster
    autoreload_poll_seconds: int = 5         # serve with a gateway: AutoReload + stuck-charge sweep; 0: off
    notify_sms_provider: str = ""            # twilio | webhook; empty: no SMS (docs/notifications.md)
    notify_sms_url: str = "https://api.twilio.com"   # Twilio's API base, or the webhook's URL
    notify_sms_account: str = ""             # Twilio Account SID
    notify_sms_token: str = field(default="", repr=False)    # Twilio auth token / webhook bearer token
    notify_sms_from: str = ""                # sender number (E.164) or Messaging Service SID (MG...)
    notify_smtp_host: str = ""               # empty: no email
    notify_smtp_port: int = 587
    notify_smtp_user: str = ""
    notify_smtp_password: str = field(default="", repr=False)
    notify_smtp_starttls: int = 1            # 1: STARTTLS before AUTH; 0 only for a loopback relay
    notify_email_from: str = "AdvancePay <alerts@localhost>"
    notify_unsubscribe_url: str = ""         # base of the signed unsubscribe link (the web page)
    notify_unsubscribe_secret: str = field(default="", repr=False)   # HMAC key of unsubscribe tokens
    notify_rate_per_hour: int = 5            # messages per channel and address per hour
    notify_unfunded_hours: int = 24          # at most one unfunded-attempt notice per number and facility
    call_request_days: int = 7               # a Request2Call request expires this many days after it is made
    notify_help_number: str = ""             # the 800 number in texts and HELP replies
    web_bind: str = "127.0.0.1:8080"         # host:port of `callcontrol web` (the family's API)
    web_secret: str = field(default="", repr=False)  # HMAC key of stored sign-in tokens; empty: no web
    web_base_url: str = ""                   # public https URL; http:// drops the Secure cookie flag (dev)

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'ledger.sqlite3'}"


def _coerce(name: str, raw: object) -> object:
    kind = Settings.__dataclass_fields__[name].type
    if kind in ("int",):
        return int(raw) if isinstance(raw, int) else int(str(raw))
    if kind == "Path":
        return Path(str(raw)).expanduser()
    if kind.startswith("tuple"):
        if isinstance(raw, list | tuple):
            return tuple(str(x) for x in raw)
        return tuple(x.strip() for x in str(raw).split(",") if x.strip())
    return str(raw)


def load_settings(env: dict[str, str] | None = None, path: str | Path | None = None) -> Settings:
    """Build Settings; unknown keys in the file are an error so typos do not pass silently."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    path = path or env.get(PREFIX + "CONFIG")
    names = {f.name for f in fields(Settings)}
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{path}: unknown setting(s): {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v) for k, v in data.items()})
    for name in names:
        raw = env.get(PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw)
    settings = replace(Settings(), **values)
    check_max_amount(settings.max_amount)    # a clear error at start-up, before anything connects
    return settings
