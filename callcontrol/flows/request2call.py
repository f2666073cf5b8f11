"""After the PIN: the inmate hears their pending Request2Call requests and may call one at once.

"You have N call requests"; for each, the holder's recorded name (if any) and the number digit by digit,
then 1 to call it now (the ordinary dial path: screening, funds and policy checks all apply) or 2 to skip.
Numbers an allowed-list inmate may not call are not offered. With no requests this costs one SELECT
(none when the facility switched the feature off); when SQL is down the menu is skipped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callcontrol.flows.context import FlowContext
from callcontrol.flows.ports import Channel
from callcontrol.policy import Inmate

if TYPE_CHECKING:
    from holders.request2call import Request

CHOICE_WAIT_MS = 5000


def dial_digits(e164: str) -> str:
    """What the inmate would key for this number: 10 digits in the NANP, else 011 + the digits."""
    return e164[2:] if e164.startswith("+1") and len(e164) == 12 else "011" + e164[1:]


def spoken(e164: str) -> str:
    return e164[2:] if e164.startswith("+1") and len(e164) == 12 else e164[1:]


async def offer(ctx: FlowContext, ch: Channel, lang: str, facility_id: str,
                inmate: Inmate) -> Request | None:
    """The request the inmate chose to call now, or None (none pending, all skipped, or no answer)."""
    data = ctx.holder_data
    if data is None:
        return None
    found = [r for r in await data.offers(facility_id, str(inmate.number))
             if ctx.policy.allowed(inmate, r.number_e164)]
    if not found:
        return None
    sp = ctx.speech
    many = "r2c_requests" if len(found) > 1 else "r2c_request"
    await _say(ctx, ch, lang, ["r2c_you_have", *sp.say_number(len(found), lang, "f"), many])
    for req in found:
        files = [req.name_file] if req.name_file else []
        ids = ["r2c_from_number", *sp.say_digits(spoken(req.number_e164), lang), "r2c_call_or_skip"]
        key = await _choose(ctx, ch, lang, files, ids)
        if key == "1":
            return req
    return None


async def _say(ctx: FlowContext, ch: Channel, lang: str, ids: list[str]) -> None:
    for name in ctx.speech.prompts(ids, lang):
        await ch.stream_file(name, "")


async def _choose(ctx: FlowContext, ch: Channel, lang: str, files: list[str], ids: list[str]) -> str:
    """The name and the number play out whole (the inmate hears which number it is); the choice may
    cut the last prompt short."""
    names: list[Any] = [*files, *ctx.speech.prompts(ids, lang)]
    for name in names[:-1]:
        await ch.stream_file(name, "")
    key = await ch.stream_file(names[-1], "12")
    if not key:
        key = await ch.wait_for_digit(CHOICE_WAIT_MS)
    return key if key in ("1", "2") else ""
