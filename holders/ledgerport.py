"""What holders need from the ledger, blocking (the support CLI and scripts are not asyncio)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ledger import Balance, Ledger


class AccountLedger(Protocol):
    def find_account(self, facility_id: str, number_e164: str) -> str | None: ...
    def open_account(self, op_id: str, facility_id: str, number_e164: str) -> str: ...
    def balance(self, account_id: str) -> Balance: ...


class BlockingLedger:
    """The asyncio Ledger on a private event loop."""

    def __init__(self, url: str, *, partitions: int = 16, max_amount: int = 100_000,
                 cluster: bool = False) -> None:
        self._loop = asyncio.new_event_loop()
        self._led = self._loop.run_until_complete(
            Ledger.connect(url, partitions=partitions, max_amount=max_amount, cluster=cluster))

    def find_account(self, facility_id: str, number_e164: str) -> str | None:
        return self._loop.run_until_complete(self._led.find_account(facility_id, number_e164))

    def open_account(self, op_id: str, facility_id: str, number_e164: str) -> str:
        return self._loop.run_until_complete(self._led.open_account(op_id, facility_id, number_e164))

    def balance(self, account_id: str) -> Balance:
        return self._loop.run_until_complete(self._led.balance(account_id))

    def close(self) -> None:
        self._loop.run_until_complete(self._led.close())
        self._loop.close()
