"""The 800 line's account options after the main menu (1 is the deposit itself, in line.py):

    2 balance and the last five calls (date, duration, cost) of the number's account at a facility
    3 AutoReload status          4 Request2Call: ask an inmate (by inmate number) to call this number

Every option starts with the number keyed and read back exactly as the deposit flow asks for it (not
the caller id: it is often withheld, a relative calls from another phone, and it can be spoofed, so it
proves nothing the keyed number does not). What is spoken is only what the deposit flow would tell
about that number anyway (its balance), plus its own calls' date, length and cost: never a called
number, an inmate or another account. A request is made only for a number an active holder verified
(the holder is the one linked to it); the caller records a name for the inmate to hear.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC
from typing import TYPE_CHECKING, Any

from callcontrol.asterisk.agi import AGIError, AGIHangup
from holders.errors import BadInput
from holders.request2call import AlreadyPending, FeatureOff, check_inmate

if TYPE_CHECKING:
    from callcontrol.deposit.line import DepositLine, Session

INMATE_TIMEOUT_MS = 10000
INMATE_MAX_DIGITS = 20


def say_date(speech: Any, month: int, day: int, lang: str) -> list[str]:
    """"November three" / "el tres de noviembre" (the prompt line_call_on says "On" / "El")."""
    if lang == "es":
        return [*speech.say_number(day, lang, "m"), "date_of", f"month_{month}"]
    return [f"month_{month}", *speech.say_number(day, lang)]


class AccountMenu:
    def __init__(self, line: DepositLine) -> None:
        self.line = line
        self.ctx = line.ctx

    async def run(self, s: Session, key: str) -> None:
        from callcontrol.deposit.line import EndCall

        data = self.ctx.holder_data
        if data is None:
            raise EndCall("no_holder_data", "line_unavailable")
        await self.line._number(s)
        account = await self._account(s)
        try:
            if key == "2":
                ids = await self._history(s, account)
            elif key == "3":
                ids = await self._autoreload(s, account)
            else:
                ids = await self._request(s)
        except (EndCall, AGIHangup, AGIError):
            raise
        except Exception as exc:
            s.log.error("line_option_unavailable", option=key, error=type(exc).__name__)
            raise EndCall("holder_data_unavailable", "line_unavailable") from None
        await self.line._finish(s, *ids)

    async def _account(self, s: Session) -> str:
        """The account of the keyed number at the query's facility, or at one where it has one (a menu
        when several); none: the caller is told so."""
        from callcontrol.deposit.line import EndCall

        s.step = "facility"
        ledger = self.ctx.ledger
        wanted = s.ch.query.get("facility") or ""
        ids = [wanted] if wanted else [f.id for f in self.ctx.catalog.facilities]
        found = await asyncio.gather(*(ledger.find_account(fid, s.e164) for fid in ids))
        held = [(fid, acc) for fid, acc in zip(ids, found, strict=True) if acc]
        if not held:
            raise EndCall("no_account", "line_no_account")
        chosen = await self.line._pick_facility(s, [fid for fid, _ in held])
        assert chosen is not None
        s.facility_id = chosen
        return str(dict(held)[chosen])

    async def _history(self, s: Session, account: str) -> list[str]:
        assert self.ctx.holder_data is not None
        sp, lang = self.ctx.speech, s.lang
        balance = await self.ctx.ledger.balance(account)
        ids = ["balance_is", *sp.say_money(max(0, balance.available), lang)]
        calls = await self.ctx.holder_data.last_calls(account)
        if not calls:
            return [*ids, "line_no_calls"]
        tz = getattr(self.ctx.catalog.facility(s.facility_id), "tz", UTC)
        ids.append("line_last_calls")
        for call in calls:
            local = call.started.astimezone(tz)
            ids += ["line_call_on", *say_date(sp, local.month, local.day, lang), "line_lasting",
                    *sp.say_duration(call.seconds, lang), "line_costing", *sp.say_money(call.cents, lang)]
        return ids

    async def _autoreload(self, s: Session, account: str) -> list[str]:
        assert self.ctx.holder_data is not None
        found = await self.ctx.holder_data.autoreload(account)
        if found is None:
            return ["autoreload_is_off"]
        threshold, amount = found
        sp, lang = self.ctx.speech, s.lang
        return ["autoreload_is_on", *sp.say_money(threshold, lang), "autoreload_charges",
                *sp.say_money(amount, lang)]

    async def _request(self, s: Session) -> list[str]:
        from callcontrol.deposit.line import EndCall

        data = self.ctx.holder_data
        assert data is not None
        s.step = "request2call"
        if not data.enabled(s.facility_id):
            return ["r2c_off"]
        holder = await data.holder_for(s.facility_id, s.e164)
        if holder is None:
            return ["line_not_verified"]
        inmate = await self._inmate(s)
        if inmate is None:
            raise EndCall("inmate_unknown", "r2c_inmate_unknown")
        name_file = await self._record_name(s)
        try:
            await data.request(holder[0], s.facility_id, inmate, s.e164, name_file)
        except AlreadyPending:
            return ["r2c_pending"]
        except FeatureOff:
            return ["r2c_off"]
        except BadInput:
            return ["line_not_verified"]
        s.log.info("call_request_made", facility_id=s.facility_id, recorded=bool(name_file))
        return ["r2c_sent"]

    async def _inmate(self, s: Session) -> str | None:
        """An active inmate of the facility's roster, keyed (tries as the other fields)."""
        policy = self.ctx.policy.facility(s.facility_id)
        for _ in range(self.line.limits.tries):
            raw = await self.line._ask(s, "r2c_enter_inmate", INMATE_TIMEOUT_MS, INMATE_MAX_DIGITS)
            try:
                number = check_inmate(raw or "")
            except BadInput:
                number = ""
            inmate = policy.inmates.get(number) if policy is not None and number else None
            if inmate is not None and inmate.active:
                return number
            await self.line._play(s, ["r2c_inmate_unknown"])
        return None

    async def _record_name(self, s: Session) -> str:
        """RECORD FILE of the holder's name; "" when nothing was recorded (the request goes without)."""
        path = self.ctx.name_path("r2c-" + secrets.token_hex(10))
        await self.line._play(s, ["r2c_say_name"])
        try:
            reply = await s.ch.record_file(path, "wav", "#", self.ctx.name_record_ms, beep=True)
        except AGIError as exc:
            s.log.warning("r2c_name_not_recorded", detail=str(exc)[:200])
            return ""
        return path if reply.endpos else ""
