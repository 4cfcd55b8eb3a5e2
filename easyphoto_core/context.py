"""What the UI, the API and the CLI share: the workspace, the studio's settings, the job queue."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core import __version__
from easyphoto_core.jobs import JobManager
from easyphoto_core.params import GenerateParams, TrainParams, field_specs
from easyphoto_core.workspace import Workspace


@dataclass
class StudioSettings:
    """Where the models are and what runs them (standalone flags, or the host's folders)."""

    base_model: Path | None = None  # SD1.5 single file; None = not configured yet
    controlnet_dirs: list[Path] = field(default_factory=list)
    lora_copy_dirs: list[Path] = field(default_factory=list)  # e.g. the host's Lora folder
    weights_dir: Path | None = None  # face models etc. (None = the registry's default)
    device: str = "auto"
    # In a host: the checkpoint loaded now (it can change between jobs), and how to free the
    # GPU for the training subprocess and take it back afterwards.
    base_model_provider: Callable[[], Path | None] | None = None
    before_training: Callable[[], None] | None = None
    after_training: Callable[[], None] | None = None
    # In a host: wraps a whole training job (given its JobHandle), e.g. to hand the GPU over,
    # show the job in the host's progress and turn the host's Interrupt into a cancel
    training_session: Callable[[Any], AbstractContextManager[None]] | None = None
    # In a host: its GenerationBackend (the host's model and ControlNet); None = diffusers
    generation_backend: Callable[[], Any] | None = None
    face_backend: str = "auto"  # auto, dlib, yunet or insightface (FaceModels.load)
    keep_face_models: bool = True  # keep them loaded between jobs (else load per job)
    user_id_slots: int = 5  # at most this many user-id dropdowns (faces) in the Generate tab
    # In a host: also save each portrait where the host keeps its images; gets (image,
    # infotext, params), returns the path written (Settings → EasyPhoto → save folder)
    save_portrait: Callable[[Any, str, Any], Path | None] | None = None
    # In a host, while the Generate tab is built: the host's Send-to buttons for the results
    # gallery (given the gallery and a hidden textbox holding the selected portrait's
    # infotext), and its paste mechanism for our fields (given name -> widget)
    results_buttons: Callable[[Any, Any], Any] | None = None
    paste_fields: Callable[[dict[str, Any]], Any] | None = None
    # In a host: Settings → EasyPhoto, read when a job needs them (they change at run time);
    # a name it returns overrides the field of the same name
    options: Callable[[], dict[str, Any]] | None = None
    # In a host: True once it is closing the page (a UI reload or a stop); the tab's streams of
    # a job's progress then end, since the host's close waits for open streams
    ui_closing: Callable[[], bool] | None = None

    def option(self, name: str) -> Any:
        if self.options is not None:
            current = self.options()
            if name in current:
                return current[name]
        return getattr(self, name)

    def current_base_model(self) -> Path | None:
        if self.base_model_provider is not None:
            return self.base_model_provider()
        return self.base_model


@dataclass
class StudioContext:
    """One per process, created by whoever starts the studio (app.py or the A1111 glue)."""

    workspace: Workspace
    backend_name: str  # "diffusers" (standalone) or "a1111"
    host_info: dict[str, Any] = field(default_factory=dict)
    settings: StudioSettings = field(default_factory=StudioSettings)
    jobs: JobManager | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # loaded models, see studio.py

    def __post_init__(self) -> None:
        if self.jobs is None:
            self.jobs = JobManager(self.workspace.root / "jobs")

    def ui_closing(self) -> bool:
        """Whether the page the tab streams to is being closed (then the streams end)."""
        return self.settings.ui_closing is not None and self.settings.ui_closing()

    def close(self) -> None:
        """The host is reloading its UI and will make a new context: this one starts no more
        jobs (a job running now finishes)."""
        self.jobs.close()

    def describe(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "backend": self.backend_name,
            "workspace": str(self.workspace.root),
            "base_model": str(self.settings.current_base_model() or "") or None,  # a host's: now
            "missing": self.missing_models(),  # what a first portrait still needs
            "face_backend": self.settings.option("face_backend"),
            "face_models": self._face_models_in_use(),  # what "auto" picked, once loaded
            **self.host_info,
        }

    def _face_models_in_use(self) -> Any:
        models = self.resources.get("face_models")
        return None if models is None else models.describe()

    def missing_models(self) -> list[dict[str, Any]]:
        from easyphoto_core.readiness import missing

        return missing(self.settings, in_host=self.backend_name != "diffusers")

    def params_description(self) -> dict[str, Any]:
        return {"train": field_specs(TrainParams), "generate": field_specs(GenerateParams)}

    def user_ids(self) -> dict[str, list[str]]:
        return {
            "user_ids": self.workspace.user_ids(),
            "trained": self.workspace.trained_user_ids(),
        }
