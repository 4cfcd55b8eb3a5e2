"""The two stand-in hosts the WebUI tests run against: AUTOMATIC1111 + sd-webui-controlnet
(stand_in_host) and Forge with its built-in ControlNet (stand_in_forge)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOTS = {"a1111": [HERE / "stand_in_host"],
         # Forge keeps each extension's folder on sys.path after loading its scripts
         "forge": [HERE / "stand_in_forge",
                   HERE / "stand_in_forge" / "extensions-builtin" / "sd_forge_controlnet"]}
HOSTS = tuple(ROOTS)
HOST_PACKAGES = ("modules", "modules_forge", "lib_controlnet", "extensions", "easyphoto_webui")


def forget_host_modules(monkeypatch) -> None:
    # each test gets a fresh host, and our glue must bind to it, not to an earlier one
    for name in list(sys.modules):
        if name.split(".")[0] in HOST_PACKAGES:
            monkeypatch.delitem(sys.modules, name)


def use_host(monkeypatch, kind: str) -> None:
    """Put the stand-in `kind` on sys.path, as the host is when it loads our script."""
    forget_host_modules(monkeypatch)
    for root in reversed(ROOTS[kind]):
        monkeypatch.syspath_prepend(str(root))
