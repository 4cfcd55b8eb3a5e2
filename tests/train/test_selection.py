"""Selection: the checkpoint whose validation images look most like the user wins.

Real face photos stand in for the validation outputs of two checkpoints, scored by the real
identity embedder against the user's real training faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto_train.checkpoints import Checkpoint
from easyphoto_train.output import ValidationRecord, select_checkpoints
from easyphoto_train.validation import IdentityScorer


def embeddings_of(face_models, photos: list[Path]) -> np.ndarray:
    rows = []
    for photo in photos:
        image = np.asarray(Image.open(photo).convert("RGB"))
        face = max(face_models.detector.detect(image), key=lambda f: f.area)
        rows.append(face_models.embedder.embed(image, face))
    return np.stack(rows)


def test_checkpoint_with_the_users_face_is_selected(face_models, faces_dir):
    user = embeddings_of(face_models, [faces_dir / "obama.jpg", faces_dir / "obama2.jpg"])
    scorer = IdentityScorer(face_models, user)
    outputs = {  # step -> what that checkpoint "generated"
        100: ["biden.jpg", "kit1.jpg"],
        200: ["obama3.jpg", "obama_small.jpg"],
        300: ["biden2.jpg", "kit2.jpg"],
    }
    validations = {}
    for step, names in outputs.items():
        images = [np.asarray(Image.open(faces_dir / n).convert("RGB")) for n in names]
        scores = [scorer.score(image) for image in images]
        validations[step] = ValidationRecord(step, scores, names, names[int(np.argmax(scores))])
    checkpoints = [Checkpoint(step, Path(f"step-{step:06d}.safetensors")) for step in outputs]

    best = select_checkpoints(checkpoints, validations, mode="best", top_k=3)
    assert best.steps == [200]
    assert best.face_id_source in outputs[200]
    fused = select_checkpoints(checkpoints, validations, mode="fusion", top_k=2)
    assert fused.steps[0] == 200 and len(fused.steps) == 2


def test_a_faceless_output_has_no_score(face_models, faces_dir):
    scorer = IdentityScorer(face_models, embeddings_of(face_models, [faces_dir / "obama.jpg"]))
    assert scorer.score(np.full((256, 256, 3), 128, np.uint8)) is None


def test_the_face_id_image_always_shows_a_face():
    """The best checkpoint drew no face anywhere: the face-id image comes from the next one that
    did; when none did there is no face-id image (generation falls back to the reference)."""
    checkpoints = [Checkpoint(step, Path(f"step-{step:06d}.safetensors")) for step in (1, 2)]
    validations = {1: ValidationRecord(1, [0.9, 0.8], ["a.png", "b.png"], None),
                   2: ValidationRecord(2, [0.3, 0.0], ["c.png", "d.png"], "c.png")}
    selection = select_checkpoints(checkpoints, validations, mode="best", top_k=1)
    assert selection.steps == [1] and selection.face_id_source == "c.png"
    validations[2].best_image = None
    selection = select_checkpoints(checkpoints, validations, mode="best", top_k=1)
    assert selection.face_id_source is None and "reference photo" in selection.notes[0]
