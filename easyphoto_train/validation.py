"""Validation during training: inpaint the face of a few templates with the live LoRA and score
how much the result looks like the user (identity similarity to the training faces).

The LoRA layers are the ones being trained, so nothing is re-read from disk; the face models are
the preprocess ones (detector + identity embedder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from easyphoto_core.faces.geometry import ellipse_mask
from easyphoto_core.params import DEFAULT_NEGATIVE_PROMPT, TRIGGER_CAPTION
from easyphoto_core.pipeline.sampler import GraphCache, InpaintSpec, LatentInpainter
from easyphoto_core.workspace import DatasetFiles, atomic_save_with
from easyphoto_train.engine import training_graph_pool
from easyphoto_train.output import ValidationRecord

if TYPE_CHECKING:
    from easyphoto_core.faces import FaceModels

VALIDATION_STEPS = 20
VALIDATION_DENOISE = 0.7  # enough to redraw the face from the LoRA, keeping pose and light


@dataclass(frozen=True)
class ValidationTemplate:
    image: np.ndarray  # uint8 res x res x 3 (a training crop)
    mask: np.ndarray  # uint8 res x res, 255 = the face region that gets redrawn


def load_templates(dataset_dir: Path, count: int) -> list[ValidationTemplate]:
    """The first `count` training crops, each with an ellipse over its face box."""
    templates = []
    lines = DatasetFiles(dataset_dir).index.read_text(encoding="utf-8").splitlines()
    for line in [x for x in lines if x.strip()][:count]:
        entry = json.loads(line)
        image = np.asarray(Image.open(dataset_dir / entry["file_name"]).convert("RGB"))
        mask = ellipse_mask(np.asarray(entry["face_box"], np.float32), image.shape[:2], scale=1.2)
        templates.append(ValidationTemplate(image, (np.asarray(mask) > 0).astype(np.uint8) * 255))
    return templates


class IdentityScorer:
    """Scores images against the user's training faces (FaceModels.identity_score); None when an
    image shows no face (scored 0, so a checkpoint that draws no face ranks last)."""

    def __init__(self, face_models: FaceModels, reference_embeddings: np.ndarray) -> None:
        self.face_models = face_models
        self.reference = np.asarray(reference_embeddings, np.float32)

    def score(self, image: np.ndarray) -> float | None:
        """Similarity to the user, or None when the image shows no face."""
        return self.face_models.identity_score(image, self.reference)


class Validator:
    def __init__(self, *, components: Any, scorer: IdentityScorer,
                 templates: list[ValidationTemplate], device: torch.device, dtype: torch.dtype,
                 seed: int) -> None:
        # on CUDA every model call replays a graph, in the step graph's memory pool: the 8
        # validations of a default run took 19.3 s instead of 41.8 s eager, and no memory
        # beyond the step's 8.23 GiB peak (H200, bench/train_gpu.py)
        graphs = GraphCache(pool=training_graph_pool()) if device.type == "cuda" else None
        self.inpainter = LatentInpainter(components, device=device, dtype=dtype,
                                         graph_cache=graphs)
        self.scorer, self.templates, self.seed = scorer, templates, seed

    def validate(self, step: int, out_dir: Path) -> ValidationRecord:
        scores, paths, with_face = [], [], []
        for number, template in enumerate(self.templates):
            image = self.inpainter(InpaintSpec(
                image=template.image, mask=template.mask, prompt=TRIGGER_CAPTION,
                negative_prompt=DEFAULT_NEGATIVE_PROMPT, steps=VALIDATION_STEPS,
                denoise=VALIDATION_DENOISE, seed=self.seed + number))
            path = out_dir / f"step-{step:06d}-{number}.png"
            atomic_save_with(path, lambda tmp, im=image: Image.fromarray(im).save(tmp,
                                                                                 format="PNG"))
            similarity = self.scorer.score(image)
            scores.append(0.0 if similarity is None else similarity)  # no face ranks last
            paths.append(str(path))
            with_face.append(similarity is not None)
        # the face-id image must show a face: generation warps its face onto the template
        candidates = [i for i in range(len(scores)) if with_face[i]]
        best = paths[max(candidates, key=lambda i: scores[i])] if candidates else None
        return ValidationRecord(step, [round(s, 4) for s in scores], paths, best)


def build_validator(*, components: Any, dataset_dir: Path, count: int, device: torch.device,
                    dtype: torch.dtype, seed: int, weights_dir: Path | None) -> Validator:
    from easyphoto_core.faces.chooser import FaceModels
    from easyphoto_core.weights import WeightPaths

    paths = WeightPaths.standalone(weights_dir) if weights_dir else None
    face_models = FaceModels.load(paths, use_mediapipe=False)
    references = np.load(DatasetFiles(dataset_dir).embeddings)
    return Validator(components=components, scorer=IdentityScorer(face_models, references),
                     templates=load_templates(dataset_dir, count), device=device, dtype=dtype,
                     seed=seed)
