"""What the UI, the API and the CLI share: the workspace, the weight folders, the backend name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easyphoto_core import __version__
from easyphoto_core.params import GenerateParams, TrainParams, field_specs
from easyphoto_core.workspace import Workspace


@dataclass
class StudioContext:
    """One per process, created by whoever starts the studio (app.py or the A1111 glue)."""

    workspace: Workspace
    backend_name: str  # "diffusers" (standalone) or "a1111"
    host_info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "backend": self.backend_name,
            "workspace": str(self.workspace.root),
            **self.host_info,
        }

    def params_description(self) -> dict[str, Any]:
        return {"train": field_specs(TrainParams), "generate": field_specs(GenerateParams)}

    def user_ids(self) -> dict[str, list[str]]:
        return {
            "user_ids": self.workspace.user_ids(),
            "trained": self.workspace.trained_user_ids(),
        }
