"""The callbacks the WebUI calls: tab, settings and HTTP routes. Registered by scripts/easyphoto.py."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from easyphoto_app.api import register_routes
from easyphoto_app.auth import parse_credentials
from easyphoto_app.ui import build_ui
from easyphoto_core.context import StudioContext, StudioSettings
from easyphoto_core.workspace import Workspace
from easyphoto_webui import host, hosts, options, send_to
from easyphoto_webui.generation import WebuiBackend


class WebuiIntegration:
    """Owns the studio context for the host process; one instance, made by the script file.

    Nothing here loads a model: building the tab reads the selected checkpoint's file name
    only, and ControlNet and the face models are looked up when a job first needs them."""

    def __init__(self) -> None:
        self._context: StudioContext | None = None
        self._backend: WebuiBackend | None = None
        self._host: hosts.Host | None = None

    def webui(self) -> hosts.Host:
        if self._host is None:
            self._host = hosts.detect()
        return self._host

    def context(self) -> StudioContext:
        # Created on first use: settings are only readable once the host has loaded them.
        if self._context is None:
            folders = host.host_folders()
            webui = self.webui()
            settings = StudioSettings(
                controlnet_dirs=list(folders.controlnet), lora_copy_dirs=[folders.lora],
                base_model_provider=webui.checkpoint,
                training_session=self._training_session,
                generation_backend=self._generation_backend,
                options=options.studio_options,  # Settings → EasyPhoto, read per job
                save_portrait=options.save_portrait,  # also where the host keeps img2img results
                results_buttons=send_to.bind_results,  # the host's Send to img2img/inpaint/extras
                paste_fields=send_to.add_paste_button,  # the host's paste of an infotext
                ui_closing=host.ui_closing,  # a UI reload waits for our streams to end
            )
            self._context = StudioContext(
                workspace=Workspace(host.workspace_root()),
                backend_name=webui.name,
                host_info={"host": webui.name, **webui.versions(), "lora_dir": str(folders.lora),
                           "controlnet_dirs": [str(p) for p in folders.controlnet]},
                settings=settings,
            )
        return self._context

    def _training_session(self, handle: Any) -> AbstractContextManager[None]:
        return host.training_session(handle, self.webui().hand_over_gpu)

    def _generation_backend(self) -> WebuiBackend:
        # one backend for the process: it keeps the img2img scripts' default arguments
        if self._backend is None:
            folders = host.host_folders()
            self._backend = WebuiBackend(lora_dir=folders.lora,
                                         controlnet_dirs=list(folders.controlnet),
                                         webui=self.webui())
        return self._backend

    def on_ui_tabs(self) -> list[tuple[Any, str, str]]:
        # The tab is built in the user's language (the host's localization, or Settings →
        # EasyPhoto), whichever localization file is chosen: words the host shows too ("Train",
        # "Generate", "Seed") are left out of our localizations/zh_CN.json (easyphoto_core.i18n).
        options.apply_language()
        return [(build_ui(self.context()), "EasyPhoto", "easyphoto")]

    def on_ui_settings(self) -> None:
        host.add_settings()
        options.add_options()

    def on_script_unloaded(self) -> None:
        """Before "Reload UI" runs our script again (which makes a new integration and job
        queue): this queue starts no more jobs; one running now finishes and is recorded."""
        if self._context is not None:
            self._context.close()

    def on_app_started(self, demo: Any, app: Any) -> None:
        credentials = parse_credentials(host.route_credentials())
        register_routes(app, self.context(), credentials=credentials)
