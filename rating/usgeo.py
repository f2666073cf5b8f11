"""US geography for classification: USPS codes and the NPA (area code) -> state map.

The NPA map is derived at first use from phonenumbers' own geocoder data (English descriptions of
+1 NPA prefixes: "Illinois", "Chicago, IL", "Washington D.C."), so it moves with the installed
phonenumbers release. The description of the whole NPA ("1312") decides; an NPA described only by
longer prefixes maps to a state only if they all agree. Canadian and Caribbean NPAs map to nothing.
The NANP territories (PR, VI, GU, AS, MP) are identified by phonenumbers' region instead.
"""

from __future__ import annotations

import functools
import re

STATE_NAMES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "Washington State": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC", "District of Columbia": "DC",
}
US_STATES = frozenset(STATE_NAMES.values())
# NANP regions that are part of the United States: calls there are domestic (interstate unless the
# facility is in the same one), per 47 CFR 64.6000's "international = terminating outside the US".
US_REGIONS = frozenset({"US", "PR", "VI", "GU", "AS", "MP"})
FACILITY_STATES = tuple(sorted(US_STATES | (US_REGIONS - {"US"})))
_SUFFIX = re.compile(r",\s*([A-Z]{2})$")


def state_of_description(text: str) -> str | None:
    if text in STATE_NAMES:
        return STATE_NAMES[text]
    m = _SUFFIX.search(text)
    if m and m[1] in US_STATES:
        return m[1]
    return None


@functools.cache
def npa_states() -> dict[str, str]:
    """NPA -> USPS state code for US geographic area codes, from phonenumbers' geocoder data."""
    from phonenumbers.geodata import GEOCODE_DATA

    whole: dict[str, str | None] = {}
    seen: dict[str, set[str | None]] = {}
    for prefix, names in GEOCODE_DATA.items():
        if len(prefix) < 4 or prefix[0] != "1" or "en" not in names:
            continue
        state = state_of_description(names["en"])
        if len(prefix) == 4:
            whole[prefix[1:]] = state
        seen.setdefault(prefix[1:4], set()).add(state)
    result = {npa: state for npa, state in whole.items() if state is not None}
    for npa, states in seen.items():
        if npa not in whole and len(states) == 1 and None not in states:
            result[npa] = next(s for s in states if s is not None)
    return result
