"""`callcontrol notify ...`: list messages, retry one, preview a template, run the delivery worker.

The worker runs as its own process (`notify run`), not inside `serve`: a slow SMTP server or a dead SMS
provider then never shares an event loop with call control. Exit codes: 0 done, 1 not found, 2 bad
input, 3 unavailable (database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import UTC, datetime
from typing import Any

from notify import outbox
from notify.channels import Channel
from notify.model import KINDS, RecipientDirectory
from notify.sql import make_engine, migrate
from notify.templates import SAMPLE, render, segments
from notify.worker import NotifyConfig, Worker


def register(sub: Any, originator: Any = None) -> None:
    """`originator`: the host's async factory (settings) -> notify.call.Originator | None, the call
    channel's way to Asterisk (notify imports nothing of callcontrol)."""
    p = sub.add_parser("notify", help="the notification outbox (docs/notifications.md)")
    cmds = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    ls = cmds.add_parser("list", help="recent messages")
    ls.add_argument("--state", choices=outbox.STATES)
    ls.add_argument("--address")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    rt = cmds.add_parser("retry", help="send a failed or skipped message again")
    rt.add_argument("message_id")
    rt.set_defaults(func=_retry)
    pv = cmds.add_parser("preview", help="render a template with sample data")
    pv.add_argument("kind", choices=KINDS)
    pv.add_argument("--lang", choices=("en", "es"), default="en")
    pv.add_argument("--tz", default="America/Chicago")
    pv.set_defaults(func=_preview)
    rn = cmds.add_parser("run", help="run the delivery worker until SIGINT/SIGTERM")
    rn.set_defaults(func=lambda args, settings: _run(args, settings, originator=originator))


def _engine(settings: Any) -> Any:
    migrate(settings.sqlalchemy_url)
    return make_engine(settings.sqlalchemy_url)


def _list(args: argparse.Namespace, settings: Any) -> int:
    engine = _engine(settings)
    with engine.connect() as conn:
        rows = outbox.listing(conn, state=args.state, address=args.address, limit=args.limit)
    engine.dispose()
    out = [{"message_id": r.message_id, "kind": r.kind, "channel": r.channel, "address": r.address,
            "state": r.state, "reason": r.reason, "attempts": r.attempts, "last_error": r.last_error,
            "next_attempt": datetime.fromtimestamp(r.next_attempt_ts / 1000, tz=UTC).isoformat(),
            "provider_id": r.provider_id} for r in rows]
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for r in out:
        print(f"{r['message_id']}  {r['kind']:<19} {r['channel']:<5} {r['address']:<28} {r['state']:<8} "
              f"{r['reason']:<14} attempts={r['attempts']} {r['last_error']}")
    return 0


def _retry(args: argparse.Namespace, settings: Any) -> int:
    engine = _engine(settings)
    with engine.begin() as conn:
        done = outbox.retry(conn, args.message_id)
    engine.dispose()
    if not done:
        print(f"notify: no failed or skipped message {args.message_id}")
        return 1
    print(f"{args.message_id}: pending again")
    return 0


def _preview(args: argparse.Namespace, settings: Any) -> int:
    text = render(args.kind, args.lang, SAMPLE, time_zone=args.tz, help_number=settings.notify_help_number)
    print(f"Subject: {text.subject}\n\n{text.text}\n\n({len(text.text)} characters, "
          f"{segments(text.text)} SMS segment(s))")
    return 0


def channels(settings: Any) -> dict[str, Channel]:
    """The channels the settings configure; none configured means nothing is claimed."""
    found: dict[str, Channel] = {}
    sms = sms_channel(settings)
    if sms is not None:
        found["sms"] = sms
    if settings.notify_smtp_host:
        from notify.mail import SMTPEmail
        found["email"] = SMTPEmail(settings.notify_smtp_host, settings.notify_smtp_port,
                                   sender=settings.notify_email_from, username=settings.notify_smtp_user,
                                   password=settings.notify_smtp_password,
                                   starttls=bool(settings.notify_smtp_starttls))
    return found


def sms_channel(settings: Any) -> Channel | None:
    """The SMS adapter the settings name (a new one each call: its HTTP client belongs to one event
    loop); None when no provider is set. Also what sends holders' verification codes (holders/sender.py)."""
    if settings.notify_sms_provider == "twilio":
        from notify.sms import TwilioSMS
        return TwilioSMS(settings.notify_sms_account, settings.notify_sms_token,
                         settings.notify_sms_from, base_url=settings.notify_sms_url)
    if settings.notify_sms_provider == "webhook":
        from notify.sms import WebhookSMS
        return WebhookSMS(settings.notify_sms_url, token=settings.notify_sms_token)
    return None


def config(settings: Any) -> NotifyConfig:
    return NotifyConfig(help_number=settings.notify_help_number, rate_per_hour=settings.notify_rate_per_hour,
                        unsubscribe_base=settings.notify_unsubscribe_url,
                        unsubscribe_secret=settings.notify_unsubscribe_secret)


def _run(args: argparse.Namespace, settings: Any, directory: RecipientDirectory | None = None,
         originator: Any = None) -> int:
    found = channels(settings)
    if not found and not (originator and settings.ami_user):
        print("notify: no channel configured (notify_sms_provider, notify_smtp_host, ami_user)")
        return 2
    engine = _engine(settings)
    from holders.alerts import derive_low_balance  # here: holders imports notify's package
    from holders.directory import HolderDirectory
    from holders.sql import migrate as holders_migrate
    holders_migrate(settings.sqlalchemy_url)

    async def main() -> None:
        calls = await originator(settings) if originator else None
        if calls is not None:
            from notify.call import CallChannel
            found["call"] = CallChannel(calls)
        worker = Worker(engine, directory or HolderDirectory(), found, config(settings),
                        ledger_events=True, derivers=(derive_low_balance,))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)

    asyncio.run(main())
    engine.dispose()
    return 0
