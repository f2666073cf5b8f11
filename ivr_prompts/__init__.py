"""AdvancePay IVR prompts: the text catalog, the WAV build, and the generated audio.

The audio lives next to this file as ``<lang>/<id>.wav`` (8 kHz mono 16-bit PCM), which is what Asterisk
plays once ``/var/lib/asterisk/sounds/advancepay`` points at this directory (docs/prompts.md).
"""

from ivr_prompts.catalog import (
    PACKAGE_DIR,
    Catalog,
    CatalogError,
    Prompt,
    Segment,
    default_facility_dir,
    facility_prompt_id,
    load_catalog,
)

__all__ = [
    "PACKAGE_DIR",
    "Catalog",
    "CatalogError",
    "Prompt",
    "Segment",
    "default_facility_dir",
    "facility_prompt_id",
    "load_catalog",
]
