"""The end of a run: pick or fuse checkpoints, write the final LoRA and the training report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core import __version__
from easyphoto_core.trainer_process.config import TrainerConfig
from easyphoto_core.trainer_process.events import EventWriter
from easyphoto_core.workspace import atomic_save_with, atomic_write_json
from easyphoto_train.checkpoints import Checkpoint, keep_selected, read_checkpoint_lora


@dataclass
class ValidationRecord:
    """Identity scores of one checkpoint's validation images (higher = more like the user)."""

    step: int
    scores: list[float]
    images: list[str]
    best_image: str | None = None

    @property
    def mean_score(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else float("-inf")


@dataclass
class Selection:
    steps: list[int]
    score: float | None
    fusion_error: float | None = None
    face_id_source: str | None = None
    notes: list[str] = field(default_factory=list)


def select_checkpoints(checkpoints: list[Checkpoint], validations: dict[int, ValidationRecord],
                       *, mode: str, top_k: int) -> Selection:
    """Best by mean validation score (or the last when unvalidated); top k when fusing."""
    scored = [c for c in checkpoints if c.step in validations]
    if not scored:
        return Selection([checkpoints[-1].step], None, notes=["no validation: last checkpoint"])
    ranked = sorted(scored, key=lambda c: validations[c.step].mean_score, reverse=True)
    chosen = ranked[: top_k if mode == "fusion" else 1]
    score = sum(validations[c.step].mean_score for c in chosen) / len(chosen)
    # the best-ranked checkpoint's best image *with a face* (a faceless one cannot be painted)
    face_id = next((validations[c.step].best_image for c in ranked
                    if validations[c.step].best_image), None)
    notes = [] if face_id else ["no validation image showed a face: generation uses the "
                                "reference photo for the pose"]
    return Selection([c.step for c in chosen], score, face_id_source=face_id, notes=notes)


def final_lora_tensors(checkpoints: list[Checkpoint], selection: Selection, rank: int, *,
                       device: Any = "cpu") -> tuple[dict[str, Any], float | None]:
    """One checkpoint's tensors as they are, or the ΔW fusion of several (with its error).

    The fusion's QR/SVDs (264 modules at rank 128) run on the training device, not the CPU."""
    by_step = {c.step: c for c in checkpoints}
    if len(selection.steps) == 1:
        return read_checkpoint_lora(by_step[selection.steps[0]]), None
    from easyphoto_core.lora_format import fuse_loras

    loras = [read_checkpoint_lora(by_step[step]) for step in selection.steps]
    fused, report = fuse_loras(loras, weights=None, rank=rank, device=device)
    return fused, float(report.relative_error)


def finish_run(config: TrainerConfig, checkpoints: list[Checkpoint], *,
               validations: dict[int, ValidationRecord], events: EventWriter,
               seconds: float, base_model_hash: str, device: Any = "cpu") -> Path:
    from easyphoto_core.lora_format import FINAL_SAVE_DTYPE, build_metadata, save_lora

    if not checkpoints:
        raise RuntimeError("training produced no checkpoint")
    params = config.params
    selection = select_checkpoints(checkpoints, validations, mode=params.lora_selection,
                                   top_k=params.fusion_top_k)
    tensors, selection.fusion_error = final_lora_tensors(checkpoints, selection, params.rank,
                                                         device=device)
    files = config.user_files
    lora_name = files.lora_name
    metadata = build_metadata(
        user_id=config.user_id, rank=params.rank, alpha=params.network_alpha,
        base_model_hash=base_model_hash, steps=max(c.step for c in checkpoints),
        score=selection.score, output_name=lora_name,
    )
    final = save_lora(files.lora_file, tensors, metadata,
                      dtype=FINAL_SAVE_DTYPE)
    copies = [_copy_to(final, directory / final.name) for directory in config.lora_copy_dirs]
    if selection.face_id_source:
        _copy_to(Path(selection.face_id_source), files.face_id_image)
    reference = config.dataset.reference_photo  # chosen by preprocess; used by generation
    if reference.is_file():
        _copy_to(reference, files.reference_photo)
    report = _report(config, selection, validations, final, copies, seconds)
    atomic_write_json(files.training_report, report)
    keep_selected(checkpoints, selection.steps)  # the final LoRA holds what the rest had
    events.emit("done", lora_path=str(final), lora_copies=[str(c) for c in copies],
                selected=selection.steps, score=selection.score,
                fusion_error=selection.fusion_error, seconds=round(seconds, 2))
    return final


def _copy_to(source: Path, target: Path) -> Path:
    atomic_save_with(target, lambda tmp: shutil.copyfile(source, tmp))
    return target


def _report(config: TrainerConfig, selection: Selection, validations: dict[int, ValidationRecord],
            final: Path, copies: list[Path], seconds: float) -> dict[str, Any]:
    return {
        "version": __version__,
        "user_id": config.user_id,
        "base_model": str(config.base_model),
        "lora": str(final),
        "lora_copies": [str(c) for c in copies],
        "selected_steps": selection.steps,
        "selection_mode": config.params.lora_selection,
        "score": selection.score,
        "fusion_error": selection.fusion_error,
        "notes": selection.notes,
        "validations": {str(s): {"scores": v.scores, "mean": v.mean_score, "images": v.images}
                        for s, v in sorted(validations.items())},
        "seconds": round(seconds, 2),
    }
