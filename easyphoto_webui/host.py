"""What EasyPhoto reads from the AUTOMATIC1111 host: folders, credentials, options.

Only this package imports `modules.*`; every access is a small function so the stand-in host in
tests/webui covers exactly what we use.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules import paths, shared

SETTINGS_SECTION = ("easyphoto", "EasyPhoto")


@dataclass(frozen=True)
class HostFolders:
    models: Path
    lora: Path
    controlnet: tuple[Path, ...]
    outputs: Path


def host_folders() -> HostFolders:
    """The host's folders, honouring --lora-dir and --controlnet-dir."""
    models = Path(paths.models_path)
    lora = Path(getattr(shared.cmd_opts, "lora_dir", None) or models / "Lora")
    controlnet = [models / "ControlNet"]
    extra = getattr(shared.cmd_opts, "controlnet_dir", None)
    if extra:
        controlnet.insert(0, Path(extra))
    outdir = getattr(shared.opts, "outdir_samples", "") or "outputs"
    return HostFolders(models, lora, tuple(controlnet), Path(outdir))


def api_auth() -> str | None:
    """The host's --api-auth ("user:pass,..."), which our routes enforce themselves."""
    return getattr(shared.cmd_opts, "api_auth", None)


def workspace_root() -> Path:
    """Setting `easyphoto_workspace`, else $EASYPHOTO_WORKSPACE, else outputs/easyphoto."""
    configured = getattr(shared.opts, "easyphoto_workspace", "") or os.environ.get(
        "EASYPHOTO_WORKSPACE", ""
    )
    return Path(configured) if configured else Path("outputs") / "easyphoto"


def add_settings() -> None:
    """Our options on the host's Settings page (read back through shared.opts.easyphoto_*)."""
    shared.opts.add_option(
        "easyphoto_workspace",
        shared.OptionInfo(
            "", "EasyPhoto workspace folder (empty = outputs/easyphoto)", section=SETTINGS_SECTION
        ),
    )


def current_checkpoint() -> Path | None:
    """The checkpoint file the host has loaded (the trainer loads the same file)."""
    model = getattr(shared, "sd_model", None)
    info = getattr(model, "sd_checkpoint_info", None)
    return Path(info.filename) if info is not None and info.filename else None


def free_gpu_for_training() -> None:
    """Move the host's model to the CPU so the training subprocess has the GPU (HOST.md)."""
    from modules import sd_models

    sd_models.unload_model_weights()


def restore_gpu_after_training() -> None:
    from modules import sd_models

    sd_models.send_model_to_device(shared.sd_model)


def controlnet_api() -> Any | None:
    """sd-webui-controlnet's `external_code` module, found among the active extensions (its
    folder name varies), or None when it is not installed."""
    from modules import extensions

    for extension in extensions.active():
        if "controlnet" not in extension.name.lower():
            continue
        package = Path(extension.path).parent.name  # "extensions" (or "extensions-builtin")
        try:
            return importlib.import_module(f"{package}.{extension.name}.scripts.external_code")
        except ImportError:
            continue
    return None


def controlnet_unit_limit() -> int:
    """Settings → ControlNet → "Multi-ControlNet: ControlNet unit number" (default 3)."""
    try:
        return int(shared.opts.data.get("control_net_unit_count", 3))
    except (TypeError, ValueError):
        return 3


def img2img_default_script_args() -> list[Any]:
    """Every img2img script's UI defaults, laid out as `p.script_args` (the way the host's own
    API fills them: modules/api/api.py, Api.init_default_script_args). Slow: it builds each
    script's UI; callers keep the result."""
    import gradio as gr
    from modules import scripts

    runner = scripts.scripts_img2img
    script_args: list[Any] = [None] * max([1, *(s.args_to for s in runner.scripts)])
    script_args[0] = 0
    with gr.Blocks():  # scripts' ui() creates components, which need an open Blocks
        for script in runner.scripts:
            components = script.ui(script.is_img2img)
            if components:
                script_args[script.args_from:script.args_to] = [c.value for c in components]
    return script_args


def run_img2img(settings: dict[str, Any], *, script_args: list[Any], controlnet: Any,
                units: list[Any], interrupt: Callable[[], bool] | None,
                progress: Callable[[int, int], None] | None = None) -> Any:
    """One img2img inpaint on the host's loaded model with ControlNet `units`; the first image,
    or None when it was interrupted.

    Holds the host's queue lock (its own generations wait), reports through shared.state, and
    while it runs passes the host's sampling step to `progress` and turns our interrupt flag
    into the host's Interrupt.
    """
    from modules import call_queue, processing, scripts

    p = processing.StableDiffusionProcessingImg2Img(sd_model=shared.sd_model, **settings)
    p.is_api = True  # before the scripts: else Sampler/Seed scripts put UI defaults back
    p.scripts = scripts.scripts_img2img
    p.script_args = list(script_args)
    controlnet.update_cn_script_in_processing(p, units)
    with call_queue.queue_lock:
        shared.state.begin(job="easyphoto")
        finished = threading.Event()
        watcher = threading.Thread(target=_watch, args=(interrupt, progress, finished),
                                   daemon=True)
        watcher.start()
        try:
            processed = processing.process_images(p)
        finally:
            finished.set()
            shared.state.end()
            p.close()
    if shared.state.interrupted or (interrupt is not None and interrupt()):
        return None
    return processed.images[0]


def _watch(interrupt: Callable[[], bool] | None, progress: Callable[[int, int], None] | None,
           finished: threading.Event) -> None:
    reported = None
    while not finished.wait(0.2):
        if interrupt is not None and interrupt() and not shared.state.interrupted:
            shared.state.interrupt()
        state = shared.state
        step = (getattr(state, "sampling_step", 0), getattr(state, "sampling_steps", 0))
        if progress is not None and step[1] and step != reported:
            progress(*step)
            reported = step
