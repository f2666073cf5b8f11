"""The API's JSON shapes. Money is integer cents plus a formatted string; rates, which carry fractions of
a cent, are integer micro-dollars plus a formatted string. No float anywhere."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from holders.alerts import MUTABLE_KINDS
from ledger.money import fmt_cents

MAX_CENTS = 10**12
MUTABLE_PATTERN = "^(" + "|".join(MUTABLE_KINDS) + ")$"      # the kinds a holder may mute


class Problem(BaseModel):
    """RFC 9457 problem details; `detail` is a plain sentence a person can act on."""
    type: str = "about:blank"
    title: str
    status: int
    detail: str


class Money(BaseModel):
    cents: int
    formatted: str

    @classmethod
    def of(cls, cents: int) -> Money:
        return cls(cents=cents, formatted=fmt_cents(cents))


class Rate(BaseModel):
    """A price with fractions of a cent (per minute, per call): micro-dollars, exact."""
    micro_dollars: int
    formatted: str

    @classmethod
    def of(cls, dollars: Decimal, unit: str = "") -> Rate:
        micro = int(dollars * 1_000_000)
        text = f"${dollars.quantize(Decimal('0.0001')).normalize():f}"
        return cls(micro_dollars=micro, formatted=text + unit)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- facilities ------------------------------------------------------------------------------------
class FacilitySummary(BaseModel):
    id: str
    name: str
    state: str
    kind: str
    advancepay: bool


class CallRate(BaseModel):
    call_type: str
    per_minute: Rate


class TaxOut(BaseModel):
    name: str
    percent: str             # a decimal as text, e.g. "4.5"
    per_call: Rate
    mandated: bool


class CapRegime(BaseModel):
    id: str
    title: str
    effective: str
    binding_from: str
    tier: str | None
    cap_per_minute: Rate | None


class FacilityDetail(FacilitySummary):
    time_zone: str
    billing_increment_seconds: int
    connect_fee: Rate
    rates: list[CallRate]
    taxes: list[TaxOut]
    cap_regime: CapRegime | None
    deposit_min: Money
    deposit_max: Money


# --- the holder ------------------------------------------------------------------------------------
class SignUp(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    mobile: str = Field(min_length=8, max_length=16, description="E.164, e.g. +13125550199")
    password: str = Field(min_length=10, max_length=200)
    language: str = Field("en", pattern="^(en|es)$")
    time_zone: str = Field("America/Chicago", max_length=64)


class Credentials(Strict):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_ts: int


class SessionOut(BaseModel):
    csrf_token: str
    expires_ts: int


class ResetStart(Strict):
    email: str = Field(min_length=3, max_length=254)


class ResetFinish(Strict):
    email: str = Field(min_length=3, max_length=254)
    code: str = Field(pattern="^[0-9]{6}$")
    password: str = Field(min_length=10, max_length=200)


class Alerts(BaseModel):
    """The holder's alert settings, as notify acts on them (holders' tables): the low-balance amount
    (set on every verified account and on accounts verified later), the SMS and email switches and the
    kinds of notice muted."""
    low_balance: Money
    sms: bool
    email: bool
    muted_kinds: list[str] = []


class QuietHours(BaseModel):
    start_minute: int = Field(ge=0, lt=1440)
    end_minute: int = Field(ge=0, lt=1440)


class Profile(BaseModel):
    holder_id: str
    name: str
    email: str
    mobile: str
    language: str
    time_zone: str
    quiet_hours: QuietHours
    alerts: Alerts


class ProfilePatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    mobile: str | None = Field(None, min_length=8, max_length=16)
    language: str | None = Field(None, pattern="^(en|es)$")
    time_zone: str | None = Field(None, max_length=64)
    quiet_hours: QuietHours | None = None
    low_balance_cents: int | None = Field(None, ge=0, le=100_000)
    alerts_sms: bool | None = None
    alerts_email: bool | None = None
    muted_kinds: list[Annotated[str, Field(pattern=MUTABLE_PATTERN)]] | None = Field(None, max_length=20)


# --- accounts --------------------------------------------------------------------------------------
class Claim(Strict):
    facility_id: str = Field(min_length=1, max_length=64)
    number: str = Field(min_length=8, max_length=16, description="the called number, E.164")
    channel: str = Field("sms", pattern="^(sms|call)$")


class Notice(BaseModel):
    status: str
    detail: str


class Verify(Strict):
    facility_id: str = Field(min_length=1, max_length=64)
    number: str = Field(min_length=8, max_length=16)
    code: str = Field(pattern="^[0-9]{6}$")


class BalanceOut(BaseModel):
    posted: Money
    held: Money
    available: Money
    state: str


class Account(BaseModel):
    account_id: str
    facility_id: str
    number: str
    verified_ts: int
    balance: BalanceOut | None
    blocked: bool


class StatementItem(BaseModel):
    ts_ms: int
    kind: str                 # deposit refund adjust call
    amount: Money             # signed: + into the account, - out of it
    detail: str


class Statement(BaseModel):
    account_id: str
    page: int
    limit: int
    items: list[StatementItem]


class Block(Strict):
    blocked: bool
    inmate_id: str | None = Field(None, min_length=1, max_length=32, pattern="^[A-Za-z0-9-]+$",
                                  description="only this inmate of the facility (absent: every inmate there)")


class BlockOut(BaseModel):
    account_id: str
    blocked: bool
    inmate_id: str | None = None


class Blocks(BaseModel):
    account_id: str
    facility: bool              # every inmate of the facility is blocked from calling the number
    inmates: list[str]          # the inmates blocked one by one, sorted


# --- payment methods and deposits ------------------------------------------------------------------
class NewCard(Strict):
    """Accepted only in this request body and passed straight to the gateway's tokenize."""
    number: str = Field(min_length=12, max_length=19, pattern="^[0-9]+$")
    expiry: str = Field(pattern="^[0-9]{2}/?[0-9]{2}$", description="MM/YY")
    cvv: str = Field(pattern="^[0-9]{3,4}$")

    @property
    def mmyy(self) -> str:
        """The gateways take MMYY."""
        return self.expiry.replace("/", "")


class MethodOut(BaseModel):
    method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class DepositIn(Strict):
    amount_cents: int = Field(ge=1, le=MAX_CENTS)
    method_id: str | None = Field(None, min_length=1, max_length=40)
    card: NewCard | None = None


class Receipt(BaseModel):
    receipt_id: str
    account_id: str
    amount: Money
    method_id: str
    status: str               # posted
    created_ts: int


# --- Request2Call ----------------------------------------------------------------------------------
class CallRequestIn(Strict):
    facility_id: str = Field(min_length=1, max_length=64)
    inmate_id: str = Field(min_length=1, max_length=32, pattern="^[A-Za-z0-9-]+$",
                           description="the inmate's number at the facility")
    number: str = Field(min_length=8, max_length=16, description="one of your verified numbers there, E.164")


class CallRequestOut(BaseModel):
    request_id: str
    facility_id: str
    inmate_id: str
    number: str
    status: str               # pending answered expired cancelled
    created_ts: int           # epoch milliseconds
    expires_ts: int
    closed_ts: int | None     # answered or cancelled at; None while pending (and for one that lapsed)
