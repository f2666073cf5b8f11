"""Asterisk simulator: Asterisk's side of FastAGI and AMI for tests, the demo and the benchmark."""

from callcontrol.sim.results import AgiTranscript, CallResult, DialAttempt
from callcontrol.sim.scripts import Handset, HangUp, Interrupt, Keys, Recipient, Record, Timeout
from callcontrol.sim.world import SimConfig, Simulator

__all__ = [
    "AgiTranscript",
    "CallResult",
    "DialAttempt",
    "Handset",
    "HangUp",
    "Interrupt",
    "Keys",
    "Recipient",
    "Record",
    "SimConfig",
    "Simulator",
    "Timeout",
]
