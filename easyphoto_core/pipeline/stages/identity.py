"""Stage 8: how much an output face looks like its user, as a score in [0, 1].

The embedder's unit embeddings give a cosine similarity s per reference face; for unit vectors
the L2 distance is d = sqrt(2 - 2s). The score rescales d by the embedder's own same-person
distance d_t (from `same_person_similarity`), because each model's scale differs (dlib puts
strangers at cosine ~0.8, ArcFace near 0):

    score = clip(1 - (d / d_t)^2 / 2, 0, 1) = clip(1 - (1 - s) / (2 (1 - t)), 0, 1)

so 1 = the same embedding, 0.5 = exactly on the model's same-person threshold, and 0 = twice
the threshold's squared distance or more (a clear stranger). Against several reference faces
the median similarity is used: robust to one odd photo, and a mean embedding would sit closer
to everybody than any real face does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from easyphoto_core.faces import FaceDetection, FaceDetector, FaceEmbedder


@dataclass(frozen=True)
class IdentityScore:
    """similarity: median cosine similarity to the references; score: in [0, 1] (see module);
    same_person: similarity >= the embedder's same-person threshold; face: the face scored."""

    similarity: float
    score: float
    same_person: bool
    face: FaceDetection


def similarity_to_score(similarity: float, same_person_similarity: float) -> float:
    """The module's [0, 1] score of a cosine similarity under a model's threshold."""
    threshold_distance = max(1e-6, 1.0 - same_person_similarity)
    return float(np.clip(1.0 - (1.0 - similarity) / (2.0 * threshold_distance), 0.0, 1.0))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def identity_score(
    image: np.ndarray,
    references: np.ndarray,
    *,
    embedder: FaceEmbedder,
    face: FaceDetection,
    detector: FaceDetector | None = None,
) -> IdentityScore:
    """Score the face at `face` in `image` against `references` (N x dim unit embeddings of the
    user, e.g. the dataset's embeddings.npy).

    With a `detector`, the face is re-detected and the detection overlapping `face` most is
    used (a generated face's landmarks differ slightly from the template's); without one, or
    when nothing overlaps, `face` is embedded as given.
    """
    chosen = face
    if detector is not None:
        found = detector.detect(image)
        overlaps = [_overlap(candidate.box, face.box) for candidate in found]
        if overlaps and max(overlaps) > 0.3:
            chosen = found[int(np.argmax(overlaps))]
    refs = np.asarray(references, dtype=np.float32).reshape(-1, embedder.dim)
    if len(refs) == 0:
        raise ValueError("no reference embeddings to score against")
    embedding = embedder.embed(image, chosen)
    similarity = float(np.median(refs @ embedding))
    threshold = float(embedder.same_person_similarity)
    return IdentityScore(
        similarity=similarity,
        score=similarity_to_score(similarity, threshold),
        same_person=similarity >= threshold,
        face=chosen,
    )
