"""Malformed input from the Asterisk side, end to end over real TCP: the attempt is still recorded,
and channel data that is not UTF-8 does not drop a call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callcontrol.asterisk.agi import AGIChannel, AGIServer
from callcontrol.decisions import record_facility
from callcontrol.sim import Recipient
from tests.e2e_support import handset, prompt_ids, running

MARIA = "+13125551234"


@pytest.mark.parametrize(("query", "recorded"), [
    ("facility=FAC-07%0AX", "invalid:FAC-07.0AX"),                 # a newline
    ("facility=fac%2007%3A%E2%82%AC", "invalid:fac.2007.3A.E2.82.AC"),
    ("facility=" + "F" * 200, "invalid:" + "F" * 120),
])
def test_a_malformed_facility_is_denied_and_recorded_escaped(tmp_path: Path, redis_url: str, query: str,
                                                             recorded: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url) as h:
            result = await h.call(handset("3125551234"), Recipient(MARIA, keys="1"), query=query)
            assert result.dials == [] and "service_unavailable" in prompt_ids(result.prompts)
            await h.quiesce()
            [rec] = h.records                                      # written, so the ledger accepted it
            assert (rec["facility_id"], rec["outcome"], rec["reason"]) == (recorded, "failed",
                                                                         "unknown_facility")
    asyncio.run(go())


def test_record_facility_keeps_good_ids_and_escapes_the_rest() -> None:
    assert record_facility("FAC-07") == "FAC-07"
    assert record_facility("") == "unknown"
    assert record_facility("invalid:FAC-07") == "invalid:invalid.3AFAC-07"   # never mistaken for a good id
    assert len(record_facility("\n" * 200)) == 128


def test_a_caller_name_that_is_not_utf8_is_replaced_and_the_call_goes_on() -> None:
    """docs/protocol.md: values that are not UTF-8 are decoded with U+FFFD; the session runs."""
    seen: dict[str, Any] = {}

    async def flow(ch: AGIChannel) -> None:
        seen["name"] = ch.env["agi_calleridname"]
        seen["query"] = ch.query

    async def main() -> int:
        server = AGIServer({"flow": flow}, allow=["127.0.0.1"])
        await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"agi_network: yes\nagi_network_script: flow?facility=FAC-07\n"
                         b"agi_calleridname: Jos\xe9 P\xe9rez\nagi_uniqueid: 1.1\n\n")
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)              # the flow ran and the server closed
            writer.close()
            return server.rejected
        finally:
            await server.stop(grace=0.5)

    assert asyncio.run(main()) == 0
    assert seen == {"name": "Jos\ufffd P\ufffdrez", "query": {"facility": "FAC-07"}}
