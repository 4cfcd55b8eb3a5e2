"""A training job's progress as the UI and the API show it: stage, step/total, loss, ETA, each
photo's verdict, each validation, and a short log in words.

The trainer's JSON-lines events say what just happened; between them the job would look stuck
(the model loads before the first step, a checkpoint is validated after its step, the final LoRA
is chosen and fused after the last validation). So each event also names the stage that starts
next, and every stage change is stamped with its start time, from which a UI shows time spent.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

LOG_LINES = 200  # the log keeps the newest lines; the full events stay in the trainer's output


class ProgressSink(Protocol):
    def report(self, **progress: Any) -> None: ...


class TrainingProgress:
    """Turns preprocess callbacks and trainer events into `progress` fields of a job record."""

    def __init__(self, sink: ProgressSink, *, validation: bool, fusion: bool) -> None:
        self.sink, self.validation, self.fusion = sink, validation, fusion
        self.log: list[str] = []
        self.validations: list[dict[str, Any]] = []
        self.total = 0
        self.stage = ""

    def _report(self, stage: str | None = None, line: str | None = None, **fields: Any) -> None:
        if line:
            stamp = time.strftime("%H:%M:%S")
            self.log = [*self.log, f"{stamp} {line}"][-LOG_LINES:]
            fields["log"] = self.log
        if stage is not None and stage != self.stage:
            self.stage = stage
            fields.update(stage=stage, stage_started=time.time())
        self.sink.report(**fields)

    # --- preprocess -----------------------------------------------------------------------

    def preprocess(self, done: int, total: int, message: str) -> None:
        self._report("preprocess", message, step=done, total=total)

    def photos(self, report: Any) -> None:
        """Every photo's verdict (a PreprocessReport), shown as thumbnails with the reason."""
        photos = [{"index": v.index, "name": v.name, "kept": v.kept, "reason": v.reason,
                   "message": v.message, "similarity": v.identity_similarity,
                   "image_file": v.image_file} for v in report.photos]
        kept = sum(1 for v in report.photos if v.kept)
        self._report(line=f"{kept} of {len(photos)} photos kept", photos=photos)
        for v in report.photos:
            self._report(line=f"{v.name}: {'kept' if v.kept else 'dropped'} - {v.message}")

    def loading(self) -> None:
        self._report("loading", "loading the model for training", step=0, total=0)

    # --- trainer events -------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _on_start(self, event: dict[str, Any]) -> None:
        self.total = int(event.get("total_steps", 0))
        self._report("train", f"training {self.total} steps on {event.get('photos')} photos "
                     f"({event.get('device')}, {event.get('dtype')}; model ready in "
                     f"{event.get('startup_seconds')} s)",
                     step=int(event.get("start_step", 0)), total=self.total)

    def _on_step(self, event: dict[str, Any]) -> None:
        self.total = int(event["total_steps"])
        self._report("train", step=event["step"], total=self.total, loss=event.get("loss"),
                     eta_seconds=event.get("eta_seconds"))

    def _on_validating(self, event: dict[str, Any]) -> None:
        self._report("validation", f"validating the checkpoint of step {event['step']}")

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        # written on a thread while training goes on: the stage is the steps' or validation's,
        # except after the last step of a run without validation, when the choice comes next
        last = event["step"] >= self.total > 0
        following = self._after_last() if last and not self.validation else None
        self._report(following, f"checkpoint saved at step {event['step']}")

    def _on_validation(self, event: dict[str, Any]) -> None:
        self.validations = [*self.validations, {
            "step": event["step"], "mean_score": event.get("mean_score"),
            "scores": event.get("scores", []), "images": event.get("images", [])}]
        last = event["step"] >= self.total > 0
        self._report(self._after_last() if last else "train",
                     f"validation at step {event['step']}: identity {event.get('mean_score')}",
                     validations=self.validations)

    def _after_last(self) -> str:
        return "fusion" if self.fusion else "selecting"

    def _on_note(self, event: dict[str, Any]) -> None:
        self._report(line=str(event.get("message", "")))

    def _on_done(self, event: dict[str, Any]) -> None:
        self._report("done", f"LoRA saved: {event.get('lora_path')}")

    def _on_cancelled(self, event: dict[str, Any]) -> None:
        self._report(line=f"cancelled at step {event.get('step')}")

    def _on_error(self, event: dict[str, Any]) -> None:
        self._report(line=f"error: {event.get('message')}")


class GenerationProgress:
    """A generation's pipeline callback: step/total of the pass that runs, and every pass seen
    (a short first diffusion or seam pass can start and end between two looks at the record)."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.passes: list[str] = []

    def __call__(self, step: int, total: int, stage: str) -> None:
        fields: dict[str, Any] = {"stage": stage, "step": step, "total": total}
        if stage not in self.passes:
            self.passes = [*self.passes, stage]
            fields.update(passes=self.passes, stage_started=time.time())
        self.sink.report(**fields)
