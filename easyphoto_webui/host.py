"""What EasyPhoto reads from the AUTOMATIC1111 host: folders, credentials, options.

Only this package imports `modules.*`; every access is a small function so the stand-in host in
tests/webui covers exactly what we use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
