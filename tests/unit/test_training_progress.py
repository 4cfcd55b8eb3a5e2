"""The stage a training job shows, from the trainer's events, in the order the trainer sends them
(a checkpoint's event comes when its file is written, after its validation)."""

from __future__ import annotations

from easyphoto_core.trainer_process.progress import TrainingProgress


class Sink:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def report(self, **progress) -> None:
        if "stage" in progress:
            self.stages.append(progress["stage"])


def stages_for(events, *, validation: bool, fusion: bool) -> list[str]:
    sink = Sink()
    progress = TrainingProgress(sink, validation=validation, fusion=fusion)
    for event in events:
        progress.event(event)
    return sink.stages


def test_validation_shows_while_it_runs_and_a_late_checkpoint_changes_no_stage():
    events = [{"event": "start", "total_steps": 4, "photos": 5},
              {"event": "step", "step": 2, "total_steps": 4},
              {"event": "validating", "step": 2},
              {"event": "validation", "step": 2, "mean_score": 0.5},
              {"event": "step", "step": 3, "total_steps": 4},
              {"event": "checkpoint", "step": 2, "path": "step-000002.safetensors"},
              {"event": "step", "step": 4, "total_steps": 4},
              {"event": "validating", "step": 4},
              {"event": "validation", "step": 4, "mean_score": 0.6},
              {"event": "checkpoint", "step": 4, "path": "step-000004.safetensors"},
              {"event": "done", "lora_path": "x.safetensors"}]
    assert stages_for(events, validation=True, fusion=True) == [
        "train", "validation", "train", "validation", "fusion", "done"]


def test_without_validation_the_last_checkpoint_leads_to_the_choice():
    events = [{"event": "start", "total_steps": 2, "photos": 5},
              {"event": "step", "step": 1, "total_steps": 2},
              {"event": "checkpoint", "step": 1, "path": "a"},
              {"event": "step", "step": 2, "total_steps": 2},
              {"event": "checkpoint", "step": 2, "path": "b"}]
    assert stages_for(events, validation=False, fusion=False) == ["train", "selecting"]
