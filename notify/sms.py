"""SMS through an HTTP provider: Twilio's Programmable Messaging REST API, or a generic JSON webhook.

Twilio: POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json, form fields To, From (or
MessagingServiceSid) and Body, HTTP basic auth (Account SID, auth token); a 201 carries the message's
`sid` and `status`, an error carries `code` and `message` (21610: the number replied STOP to us).
Twilio takes no idempotency key on create, so after an attempt whose outcome is unknown (a timeout, a
worker killed mid-send) `lookup` lists the messages sent to that number since the first attempt and
matches the body: a match is recorded as sent instead of sending again.

Webhook: POST {url} with JSON {"id", "to", "body"} and an Idempotency-Key header equal to the message id;
the receiver answers 2xx with {"id": provider id} and treats a repeated key as the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from notify.channels import FAILED, OPTED_OUT, RETRY, SENT, UNKNOWN, Outcome, Outgoing

TWILIO_OPTED_OUT = 21610       # "Attempt to send to unsubscribed recipient"
TRANSIENT_STATUS = (408, 409, 425, 429)


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(0, int(response.headers.get("Retry-After", "0"))) * 1000
    except ValueError:
        return 0


def classify(response: httpx.Response, provider_id: str, code: object = "") -> Outcome:
    status = response.status_code
    if 200 <= status < 300 and provider_id:
        return Outcome(SENT, provider_id=provider_id)
    error = f"http {status}" + (f" code {code}" if code else "")
    if status in TRANSIENT_STATUS or status >= 500:
        return Outcome(RETRY, error=error, retry_after_ms=_retry_after(response))
    if 200 <= status < 300:
        return Outcome(UNKNOWN, error="accepted without an id")
    return Outcome(FAILED, error=error)


async def _post(client: httpx.AsyncClient, url: str, **kw: Any) -> httpx.Response | Outcome:
    try:
        return await client.post(url, **kw)
    except httpx.TimeoutException:
        return Outcome(UNKNOWN, error="timeout")          # it may have been accepted: look before resending
    except httpx.ConnectError:
        return Outcome(RETRY, error="connect failed")     # nothing reached the provider
    except httpx.HTTPError as exc:
        return Outcome(UNKNOWN, error=type(exc).__name__)


@dataclass
class TwilioSMS:
    account_sid: str
    auth_token: str = field(repr=False)
    sender: str                             # From (E.164), or a Messaging Service SID (MG...)
    base_url: str = "https://api.twilio.com"
    timeout: float = 10.0
    client: httpx.AsyncClient | None = field(default=None, repr=False)
    name: str = "sms"

    def __post_init__(self) -> None:
        self._client = self.client or httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), trust_env=False,
                                                        auth=(self.account_sid, self.auth_token))

    @property
    def _messages(self) -> str:
        return f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    async def send(self, msg: Outgoing) -> Outcome:
        form = {"To": msg.address, "Body": msg.text}
        form["MessagingServiceSid" if self.sender.startswith("MG") else "From"] = self.sender
        got = await _post(self._client, self._messages, data=form)
        if isinstance(got, Outcome):
            return got
        body = _json(got)
        code = body.get("code", "")
        if code == TWILIO_OPTED_OUT:
            return Outcome(OPTED_OUT, error=f"http {got.status_code} code {code}")
        return classify(got, str(body.get("sid", "")), code)

    async def lookup(self, msg: Outgoing, exclude: set[str]) -> str | None:
        """A message to the same number with the same body, created since the first attempt, that no
        other outbox message already claims. Raises on a provider error: the caller retries later."""
        since = datetime.fromtimestamp(msg.first_attempt_ms / 1000, tz=UTC) - timedelta(minutes=1)
        params = {"To": msg.address, "DateSent>": since.strftime("%Y-%m-%d"), "PageSize": "100"}
        response = await self._client.get(self._messages, params=params)
        response.raise_for_status()
        for item in _json(response).get("messages", []):
            sid = str(item.get("sid", ""))
            created = item.get("date_created")
            if not sid or sid in exclude or item.get("body") != msg.text:
                continue
            if created and parsedate_to_datetime(str(created)) < since:
                continue
            return sid
        return None

    async def close(self) -> None:
        await self._client.aclose()


@dataclass
class WebhookSMS:
    url: str
    token: str = field(default="", repr=False)    # sent as a Bearer token when set
    timeout: float = 10.0
    client: httpx.AsyncClient | None = field(default=None, repr=False)
    name: str = "sms"

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._client = self.client or httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), trust_env=False,
                                                        headers=headers)

    async def send(self, msg: Outgoing) -> Outcome:
        got = await _post(self._client, self.url, json={"id": msg.message_id, "to": msg.address,
                                                        "body": msg.text},
                          headers={"Idempotency-Key": msg.message_id})
        if isinstance(got, Outcome):
            return got
        body = _json(got)
        if got.status_code == 410 or body.get("opted_out"):
            return Outcome(OPTED_OUT, error=f"http {got.status_code}")
        return classify(got, str(body.get("id", "")))

    async def lookup(self, msg: Outgoing, exclude: set[str]) -> str | None:
        return None     # the Idempotency-Key makes a resend safe: the receiver answers with the first id

    async def close(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
