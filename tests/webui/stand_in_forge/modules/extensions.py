"""Stand-in for Forge's modules/extensions.py: its ControlNet is the built-in extension
sd_forge_controlnet (there unless STAND_IN_CONTROLNET=absent, e.g. disabled)."""

import os
from pathlib import Path
from types import SimpleNamespace

BUILTIN = Path(__file__).resolve().parents[1] / "extensions-builtin"


def active():
    if os.environ.get("STAND_IN_CONTROLNET") == "absent":
        return []
    return [SimpleNamespace(name="sd_forge_controlnet",
                            path=str(BUILTIN / "sd_forge_controlnet"))]
