"""Stand-in for modules/extensions.py: sd-webui-controlnet is installed unless
STAND_IN_CONTROLNET=absent."""

import os
from pathlib import Path
from types import SimpleNamespace

FOLDER = Path(__file__).resolve().parents[1] / "extensions"


def active():
    if os.environ.get("STAND_IN_CONTROLNET") == "absent":
        return [SimpleNamespace(name="sd-webui-other", path=str(FOLDER / "sd-webui-other"))]
    return [SimpleNamespace(name="sd-webui-controlnet", path=str(FOLDER / "sd-webui-controlnet"))]
