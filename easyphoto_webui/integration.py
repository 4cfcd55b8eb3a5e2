"""The callbacks A1111 calls: tab, settings and HTTP routes. Registered by scripts/easyphoto.py."""

from __future__ import annotations

from typing import Any

from easyphoto_app.api import register_routes
from easyphoto_app.auth import parse_credentials
from easyphoto_app.ui import build_ui
from easyphoto_core.context import StudioContext, StudioSettings
from easyphoto_core.workspace import Workspace
from easyphoto_webui import host
from easyphoto_webui.generation import WebuiBackend


class WebuiIntegration:
    """Owns the studio context for the host process; one instance, made by the script file."""

    def __init__(self) -> None:
        self._context: StudioContext | None = None
        self._backend: WebuiBackend | None = None

    def context(self) -> StudioContext:
        # Created on first use: settings are only readable once the host has loaded them.
        if self._context is None:
            folders = host.host_folders()
            settings = StudioSettings(
                controlnet_dirs=list(folders.controlnet), lora_copy_dirs=[folders.lora],
                base_model_provider=host.current_checkpoint,
                before_training=host.free_gpu_for_training,
                after_training=host.restore_gpu_after_training,
                generation_backend=self._generation_backend,
            )
            self._context = StudioContext(
                workspace=Workspace(host.workspace_root()),
                backend_name="a1111",
                host_info={"lora_dir": str(folders.lora),
                           "controlnet_dirs": [str(p) for p in folders.controlnet]},
                settings=settings,
            )
        return self._context

    def _generation_backend(self) -> WebuiBackend:
        # one backend for the process: it keeps the img2img scripts' default arguments
        if self._backend is None:
            folders = host.host_folders()
            self._backend = WebuiBackend(lora_dir=folders.lora,
                                         controlnet_dirs=list(folders.controlnet))
        return self._backend

    def on_ui_tabs(self) -> list[tuple[Any, str, str]]:
        return [(build_ui(self.context()), "EasyPhoto", "easyphoto")]

    def on_ui_settings(self) -> None:
        host.add_settings()

    def on_app_started(self, demo: Any, app: Any) -> None:
        register_routes(app, self.context(), credentials=parse_credentials(host.api_auth()))
