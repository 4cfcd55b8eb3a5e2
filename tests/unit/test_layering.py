"""The core and the trainer must import without the host or a UI framework (DESIGN.md §2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("modules", "gradio", "fastapi")

PROBE = """
import importlib, json, pkgutil, sys
OPTIONAL = {"triton"}
loaded = []
for package_name in ("easyphoto_core", "easyphoto_train"):
    package = importlib.import_module(package_name)
    loaded.append(package_name)
    for info in pkgutil.walk_packages(package.__path__, package_name + "."):
        if info.name.endswith("__main__"):
            continue  # running it would execute the CLI
        try:
            importlib.import_module(info.name)
        except ImportError as error:
            if error.name not in OPTIONAL:  # GPU-only kernels need triton; nothing else may fail
                raise
            continue
        loaded.append(info.name)
roots = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"loaded": loaded, "roots": roots}))
"""


def test_core_and_trainer_import_no_host_or_ui_module():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "easyphoto_core.params" in report["loaded"]  # the probe really walked the packages
    assert "easyphoto_train" in report["loaded"]
    leaked = [root for root in report["roots"] if root in FORBIDDEN]
    assert leaked == [], f"host/UI modules imported by the core: {leaked}"

