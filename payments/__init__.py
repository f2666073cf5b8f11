"""Card payments for deposits: the gateway interface and a sandbox, card-entry checks, the payment saga
(authorize -> credit the ledger -> capture, or void) and its trail in Redis.

A domain library: it uses `ledger` and never imports `callcontrol`; the phone flow that takes a card
lives in `callcontrol/deposit/`. Card data (number, expiry, CVV) only lives in the memory of one
request: it is passed to the gateway and dropped, never logged or stored; only the last four digits and
the gateway's authorization id are kept.
"""
