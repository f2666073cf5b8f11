"""The 800 deposit line, a phone flow: `line` (the IVR: prompts, keys, the charge's hand-off to
`payments`) and `entry` (what the caller keys, checked)."""

from callcontrol.deposit.line import DepositLine, deposit_route

__all__ = ["DepositLine", "deposit_route"]
