"""Texts for every event kind in English and Spanish: plain `str.format` templates (no Jinja2: a dozen
short texts need no loops or inheritance, and no template engine means one less dependency that could
evaluate what a payload carries). Money comes as integer cents, times as epoch ms shown in the
recipient's zone; an SMS stays within two segments (tests/test_notify_templates.py checks every one)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.money import fmt_cents
from notify import model as k
from notify.rules import zone

# kind -> language -> (email subject, SMS / plain text). The email body is the text plus a footer.
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    k.LOW_BALANCE: {
        "en": ("Low balance", "{service}: the balance for {number} is {balance}, under your {threshold} "
               "alert. Add funds to keep receiving calls: {help}."),
        "es": ("Saldo bajo", "{service}: el saldo de {number} es {balance}, menos de su alerta de "
               "{threshold}. Deposite al {help}."),
    },
    k.AUTORELOAD_OK: {
        "en": ("AutoReload deposit", "{service}: AutoReload added {amount} to {number}. "
               "New balance {balance}."),
        "es": ("Recarga automatica", "{service}: la recarga automatica sumo {amount} a {number}. "
               "Saldo {balance}."),
    },
    k.AUTORELOAD_DECLINED: {
        "en": ("AutoReload declined", "{service}: your card was declined for AutoReload of {amount} on "
               "{number}. Update your card or call {help}."),
        "es": ("Recarga rechazada", "{service}: su tarjeta fue rechazada para la recarga de {amount} en "
               "{number}. Llame al {help}."),
    },
    k.AUTORELOAD_OFF: {
        "en": ("AutoReload switched off", "{service}: AutoReload for {number} is off after repeated "
               "declines. Call {help} to turn it on."),
        "es": ("Recarga desactivada", "{service}: la recarga automatica de {number} se desactivo. "
               "Llame al {help}."),
    },
    k.DEPOSIT_RECEIPT: {
        "en": ("Deposit receipt", "{service}: we received your deposit of {amount} for {number} on {when}. "
               "Thank you."),
        "es": ("Recibo de deposito", "{service}: recibimos su deposito de {amount} para {number} el {when}. "
               "Gracias."),
    },
    k.REFUND_ISSUED: {
        "en": ("Refund issued", "{service}: a refund of {amount} for {number} was issued on {when}."),
        "es": ("Reembolso emitido", "{service}: se emitio un reembolso de {amount} para {number} el {when}."),
    },
    k.INACTIVITY: {
        "en": ("Account inactive", "{service}: the account for {number} has had no activity for 150 days. "
               "Use it or call {help} to keep it open."),
        "es": ("Cuenta inactiva", "{service}: la cuenta de {number} no tiene actividad hace 150 dias. "
               "Llame al {help}."),
    },
    k.UNFUNDED_ATTEMPT: {
        "en": ("Missed call from {facility}", "{service}: an inmate at {facility} tried to call you at "
               "{when}. Fund your account to receive calls: {help}."),
        "es": ("Llamada perdida de {facility}", "{service}: un recluso en {facility} intento llamarle el "
               "{when}. Abra o recargue su cuenta: {help}."),
    },
    k.VERIFICATION_CODE: {
        "en": ("Your code", "{service}: your code is {code}. It expires in 10 minutes."),
        "es": ("Su codigo", "{service}: su codigo es {code}. Vence en 10 minutos."),
    },
    k.R2C_ANSWERED: {
        "en": ("Your call request", "{service}: {inmate} at {facility} answered your call request."),
        "es": ("Su solicitud de llamada", "{service}: {inmate} en {facility} respondio su solicitud."),
    },
    k.SIGNIN_LOCKED: {
        "en": ("Sign-in locked", "{service}: after several wrong passwords your web sign-in is locked for "
               "15 minutes. Not you? Reset your password or call {help}."),
        "es": ("Acceso bloqueado", "{service}: tras varias claves incorrectas su acceso web esta bloqueado "
               "15 minutos. No fue usted? Cambie su clave o llame al {help}."),
    },
}

FOOTER = {"en": "Stop these emails: {unsubscribe}", "es": "Dejar de recibir estos correos: {unsubscribe}"}
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
           "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")

SAMPLE: dict[str, Any] = {"number": "+13125550142", "balance_cents": 412, "threshold_cents": 500,
                          "amount_cents": 2500, "at_ms": 1_767_272_400_000, "facility": "Cook County Jail",
                          "inmate": "John D.", "code": "000000"}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str           # the SMS body, and the email's plain-text part before its footer

    def email_text(self, lang: str, unsubscribe: str) -> str:
        return f"{self.text}\n\n{FOOTER[lang].format(unsubscribe=unsubscribe)}\n"

    def email_html(self, lang: str, unsubscribe: str) -> str:
        link = f'<a href="{html.escape(unsubscribe)}">{html.escape(unsubscribe)}</a>'
        footer = html.escape(FOOTER[lang]).replace("{unsubscribe}", link)
        return f"<html><body><p>{html.escape(self.text)}</p><p><small>{footer}</small></p></body></html>\n"


def when(at_ms: int, time_zone: str, lang: str) -> str:
    local = datetime.fromtimestamp(at_ms / 1000, tz=zone(time_zone))
    clock = local.strftime("%I:%M %p").lstrip("0") if lang == "en" else local.strftime("%H:%M")
    date = local.strftime("%m/%d/%Y") if lang == "en" else local.strftime("%d/%m/%Y")
    return f"{date} {clock}"


def render(kind: str, lang: str, payload: Mapping[str, Any], *, time_zone: str = "UTC",
           service: str = "AdvancePay", help_number: str = "") -> Rendered:
    """The texts for `kind` in `lang` (English when the language is unknown)."""
    texts = TEXTS[kind].get(lang) or TEXTS[kind]["en"]
    lang = lang if lang in TEXTS[kind] else "en"
    values = {
        "service": service, "help": help_number or "AdvancePay",
        "number": str(payload.get("number", "")), "facility": str(payload.get("facility", "")),
        "inmate": str(payload.get("inmate", "")), "code": str(payload.get("code", "")),
        "when": when(int(payload.get("at_ms", 0)), time_zone, lang),
    }
    # Money only when the event carries it: a text that names an amount its producer did not send
    # fails (KeyError) instead of telling a family "$0.00".
    for name in ("balance", "threshold", "amount"):
        if f"{name}_cents" in payload:
            values[name] = fmt_cents(int(payload[f"{name}_cents"]))
    return Rendered(texts[0].format(**values), texts[1].format(**values))


def segments(text: str) -> int:
    """SMS segments: GSM-7 160 characters alone, 153 each when split; UCS-2 70 and 67."""
    gsm = all(ch in GSM7 for ch in text)
    single, part = (160, 153) if gsm else (70, 67)
    return 1 if len(text) <= single else -(-len(text) // part)
