"""What `holders` needs from the host for refunds and the inactivity sweep: the card processor and the
notify outbox (holders imports neither callcontrol nor notify; notify may import holders)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from callcontrol.deposit.line import gateway_from_settings
from holders.inactivity import Notice
from notify.model import INACTIVITY, Event
from notify.outbox import enqueue
from notify.sql import migrate as notify_migrate
from payments.gateway import PaymentGateway


def gateway(settings: Any) -> PaymentGateway | None:
    return gateway_from_settings(settings)


class OutboxNotices:
    """The 150-day notice as a notify event, idempotent by the sweep's dedupe key."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        notify_migrate(engine.url.render_as_string(hide_password=False))

    def inactivity(self, notice: Notice) -> None:
        with self._engine.begin() as conn:
            enqueue(conn, Event(
                kind=INACTIVITY, dedupe_key=notice.dedupe_key, account_id=notice.account_id,
                holder_id=notice.holder_id, facility_id=notice.facility_id, number_e164=notice.number,
                language=notice.language, time_zone=notice.time_zone,
                payload={"number": notice.number, "last_activity": notice.last_activity.isoformat(),
                         "refund_on": notice.refund_on.isoformat()}))
