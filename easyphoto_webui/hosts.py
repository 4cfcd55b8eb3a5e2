"""The two hosts EasyPhoto runs in, behind one small interface: AUTOMATIC1111 with the
sd-webui-controlnet extension, and Forge with its built-in ControlNet.

They differ in how the checkpoint is read without loading it, how the GPU is handed to the
trainer, which ControlNet API, unit type, model list and preprocessor spelling they have, how a
unit reaches ControlNet's script and on which thread a generation runs. Everything they share
(modules.processing, shared.state, the queue lock, callbacks, folders) lives in host.py. The host
is recognised by what it has — Forge ships the `modules_forge` package — never by a version
string. Facts: HOST.md (A1111 1.10.1, sd-webui-controlnet 1.1.455) and Forge dfdcbab6
(`lib_controlnet/external_code.py`, `global_state.py`, `scripts/controlnet.py`,
`modules/sd_models.py`, `modules_forge/main_thread.py`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

T = TypeVar("T")


class ControlNet(Protocol):
    """The host's ControlNet, as far as EasyPhoto uses it."""

    # methods of ControlNet's always-on script whose errors the host logs and swallows; each
    # must run without an error for a unit to count as applied
    phases: tuple[str, ...]

    def model_names(self, *, refresh: bool = False) -> list[str]:
        """Every model as the host names it in a unit ("stem [hash]")."""

    def unit(self, *, model: str, weight: float, image: np.ndarray) -> Any:
        """An enabled unit with our drawn control image and no preprocessor."""

    def attach(self, p: Any, units: list[Any]) -> None:
        """Hand `units` to ControlNet's script for the run of `p` (script_args filled)."""


class Host(Protocol):
    name: str  # "a1111" or "forge", as /version and About show it

    def versions(self) -> dict[str, str]:
        """The host's and its ControlNet's versions, cheap to read (no model is loaded)."""

    def checkpoint(self) -> Path | None:
        """The checkpoint the host uses now or will load next; never loads it."""

    def hand_over_gpu(self) -> Callable[[], None]:
        """Free the GPU for the trainer; returns what gives it back afterwards."""

    def controlnet(self) -> ControlNet | None:
        """The host's ControlNet, or None when it has none."""

    def controlnet_missing(self) -> str:
        """What to do when `controlnet()` is None, in this host's words."""

    def run(self, work: Callable[[], T]) -> T:
        """Run a generation where the host wants it run; its exception comes back here."""


def find_script(runner: Any, title: str) -> Any | None:
    """The always-on script of a script runner by its title (case-insensitive)."""
    for script in getattr(runner, "alwayson_scripts", []):
        if script.title().lower() == title.lower():
            return script
    return None


def _checkpoint_file(info: Any) -> Path | None:
    filename = getattr(info, "filename", None)
    return Path(filename) if filename else None


def _controlnet_extension() -> Any | None:
    """The active extension that is a ControlNet (its folder name varies), or None."""
    from modules import extensions

    for extension in extensions.active():
        if "controlnet" in extension.name.lower():
            return extension
    return None


def _git_tag() -> str:
    try:
        from modules import launch_utils

        return str(launch_utils.git_tag())  # cached by the host (lru_cache)
    except Exception:  # an odd install must not break /version
        return "unknown"


class A1111ControlNet:
    """sd-webui-controlnet's `external_code` (API 3): a pydantic unit, `get_models`,
    `update_cn_script_in_processing`; it does its work in the script's `process`."""

    phases = ("process",)

    def __init__(self, external_code: Any) -> None:
        self.api = external_code

    def model_names(self, *, refresh: bool = False) -> list[str]:
        return list(self.api.get_models(update=refresh))

    def unit(self, *, model: str, weight: float, image: np.ndarray) -> Any:
        # module "none": our control image is already drawn, and no preprocessor downloads
        return self.api.ControlNetUnit(
            enabled=True, module="none", model=model, weight=weight, image=image,
            resize_mode="Just Resize", control_mode="Balanced", pixel_perfect=False)

    def attach(self, p: Any, units: list[Any]) -> None:
        self.api.update_cn_script_in_processing(p, units)


class A1111Host:
    name = "a1111"

    def versions(self) -> dict[str, str]:
        extension = _controlnet_extension()
        controlnet = "not installed"
        if extension is not None:
            controlnet = f"{extension.name} {getattr(extension, 'version', '') or ''}".strip()
        return {"host_version": _git_tag(), "controlnet": controlnet}

    def checkpoint(self) -> Path | None:
        from modules import sd_models

        # shared.sd_model would load the checkpoint (it is lazy): read what is loaded, else
        # what is selected, which is what A1111 loads on first use
        loaded = sd_models.model_data.sd_model
        if loaded is not None:
            return _checkpoint_file(getattr(loaded, "sd_checkpoint_info", None))
        try:
            return _checkpoint_file(sd_models.select_checkpoint())
        except FileNotFoundError:  # no checkpoint at all: the caller says what to do
            return None

    def hand_over_gpu(self) -> Callable[[], None]:
        from modules import sd_models

        loaded = sd_models.model_data.sd_model
        if loaded is None:  # nothing on the GPU yet; loading it now would only waste time
            return lambda: None
        sd_models.unload_model_weights(loaded)  # to the CPU: the weights stay in RAM
        return lambda: sd_models.send_model_to_device(loaded)

    def controlnet(self) -> ControlNet | None:
        extension = _controlnet_extension()
        if extension is None:
            return None
        package = Path(extension.path).parent.name  # "extensions" (or "extensions-builtin")
        try:
            return A1111ControlNet(importlib.import_module(
                f"{package}.{extension.name}.scripts.external_code"))
        except ImportError:
            return None

    def controlnet_missing(self) -> str:
        return ("Generating in the WebUI needs the sd-webui-controlnet extension: install it "
                "from Extensions → Available (Mikubill/sd-webui-controlnet) and restart the "
                "WebUI.")

    def run(self, work: Callable[[], T]) -> T:
        return work()  # A1111's API runs process_images on the calling thread too



class ForgeControlNet:
    """Forge's built-in ControlNet (`lib_controlnet`, API 2): a dataclass unit, models from
    `global_state`, units written into the ControlNet script's `p.script_args` slots; a unit
    is prepared in `process` and patched into the UNet in `process_before_every_sampling`."""

    phases = ("process", "process_before_every_sampling")

    def __init__(self, external_code: Any, global_state: Any) -> None:
        self.api, self.state = external_code, global_state

    def model_names(self, *, refresh: bool = False) -> list[str]:
        if refresh:
            self.state.update_controlnet_filenames()
        return list(self.state.get_all_controlnet_names())

    def unit(self, *, model: str, weight: float, image: np.ndarray) -> Any:
        # Forge spells "no preprocessor" "None": "none" is no preprocessor it knows, and its
        # script fails on it (seen in a real Forge). An empty foreground layer keeps its
        # "dark image? use the drawn layer" branch off for a nearly black canny image.
        foreground = np.zeros((*image.shape[:2], 4), np.uint8)
        return self.api.ControlNetUnit(
            enabled=True, module="None", model=model, weight=weight, image=image,
            image_fg=foreground, resize_mode="Just Resize", control_mode="Balanced",
            pixel_perfect=False, save_detected_map=False)

    def attach(self, p: Any, units: list[Any]) -> None:
        script = find_script(p.scripts, "ControlNet")
        if script is None:
            raise RuntimeError("Forge's ControlNet script is not active for img2img.")
        slots = script.args_to - script.args_from
        if len(units) > slots:  # the setting was raised without a restart
            raise ValueError(
                f"This pass needs {len(units)} ControlNet units, but Forge's ControlNet has "
                f"{slots}: raise Settings → ControlNet → Multi-ControlNet: ControlNet unit "
                f"number to {len(units)} and restart Forge.")
        idle = [self.api.ControlNetUnit(enabled=False) for _ in range(slots - len(units))]
        args = list(p.script_args)
        args[script.args_from:script.args_to] = [*units, *idle]
        p.script_args = args


class ForgeHost:
    name = "forge"

    def versions(self) -> dict[str, str]:
        return {"host_version": _git_tag(), "controlnet": "built-in (Forge)"}

    def checkpoint(self) -> Path | None:
        from modules import sd_models

        # Forge keeps a FakeInitialModel until its first generation; the selected checkpoint
        # is in the loading parameters (set at start-up and by the checkpoint dropdown)
        data = sd_models.model_data
        selected = getattr(data, "forge_loading_parameters", {}).get("checkpoint_info")
        if selected is not None:
            return _checkpoint_file(selected)
        loaded = _checkpoint_file(getattr(getattr(data, "sd_model", None),
                                          "sd_checkpoint_info", None))
        if loaded is not None:
            return loaded
        # our tab is built before main_entry fills the loading parameters: the checkpoint the
        # settings select, found without loading it
        return _checkpoint_file(sd_models.select_checkpoint())

    def hand_over_gpu(self) -> Callable[[], None]:
        from modules import sd_models

        # unloads every model from the GPU; Forge moves them back itself when it next needs
        # them (send_model_to_device is a stub there), so there is nothing to give back
        sd_models.unload_model_weights()
        return lambda: None

    def controlnet(self) -> ControlNet | None:
        if _controlnet_extension() is None:  # sd_forge_controlnet disabled
            return None
        try:  # Forge puts each extension's folder on sys.path: lib_controlnet is top level
            return ForgeControlNet(importlib.import_module("lib_controlnet.external_code"),
                                   importlib.import_module("lib_controlnet.global_state"))
        except ImportError:
            return None

    def controlnet_missing(self) -> str:
        return ("Forge's built-in ControlNet (extensions-builtin/sd_forge_controlnet) is not "
                "loaded: enable it in Extensions → Installed and restart Forge.")

    def run(self, work: Callable[[], T]) -> T:
        """On Forge's main thread, where its own img2img runs (model moves are faster there);
        its runner prints and drops exceptions, so the outcome comes back boxed."""
        from modules_forge import main_thread

        def boxed() -> tuple[bool, Any]:
            try:
                return True, work()
            except BaseException as error:  # handed back to the calling thread below
                return False, error

        ok, value = main_thread.run_and_wait_result(boxed)
        if not ok:
            raise value
        return value


def detect() -> Host:
    """Forge if the host has Forge's own package, else AUTOMATIC1111."""
    return ForgeHost() if importlib.util.find_spec("modules_forge") is not None else A1111Host()
