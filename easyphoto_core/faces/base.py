"""What every face backend returns and the Protocols it implements.

Coordinates follow `easyphoto_core.faces.geometry`'s conventions: images are H x W x 3 uint8 RGB,
points are (x, y) in OpenCV pixel coordinates, boxes are (x0, y0, x1, y1), masks are H x W uint8
0/255. Results are plain numpy arrays so that any backend can feed any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class FaceModelError(RuntimeError):
    """A face backend cannot be used; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    box: (x0, y0, x1, y1) float array in image pixels (may reach slightly outside the image).
    landmarks5: 5 x 2 float array: the eye on the image's left, the other eye, nose tip, the mouth
        corner on the image's left, the other mouth corner (geometry module's order).
    score: detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks5: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def short_side(self) -> float:
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass(frozen=True)
class DenseLandmarks:
    """Many landmarks of one face and the named regions among them.

    points: N x 2 float array in image pixels.
    regions: region name -> indices into `points` of its outline. Names used by the product:
        "face_oval", "left_eye", "right_eye", "left_brow", "right_brow", "lips" (left/right as
        they appear in the image).
    """

    points: np.ndarray
    regions: dict[str, np.ndarray] = field(default_factory=dict)

    def region(self, name: str) -> np.ndarray | None:
        indices = self.regions.get(name)
        return None if indices is None else self.points[indices]


@dataclass(frozen=True)
class BodyPose:
    """Body keypoints of one person: points N x 2 float (image pixels), visibility N in [0, 1],
    names N keypoint names in the backend's order (MediaPipe: its 33 pose landmarks)."""

    points: np.ndarray
    visibility: np.ndarray
    names: tuple[str, ...]


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces: boxes, 5 landmarks and scores, best score first."""

    name: str

    def detect(self, image: np.ndarray) -> list[FaceDetection]: ...


@runtime_checkable
class LandmarkModel(Protocol):
    """Dense landmarks (face mesh) of a face already found by a detector."""

    name: str

    def landmarks(self, image: np.ndarray, face: FaceDetection) -> DenseLandmarks | None: ...


@runtime_checkable
class FaceEmbedder(Protocol):
    """Identity embedding of a detected face.

    Embeddings are float32 vectors of length `dim` with unit L2 norm, so that similarity is a
    dot product (cosine). Two faces with similarity >= `same_person_similarity` are taken as the
    same person; the threshold belongs to the model because each model's scale differs.
    """

    name: str
    dim: int
    same_person_similarity: float

    def embed(self, image: np.ndarray, face: FaceDetection) -> np.ndarray: ...


@runtime_checkable
class PersonSegmenter(Protocol):
    """Person (foreground) mask of an image: H x W uint8, 255 = person."""

    name: str

    def person_mask(self, image: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class PoseEstimator(Protocol):
    """Body keypoints of the most prominent person, or None when nobody is found."""

    name: str

    def pose(self, image: np.ndarray) -> BodyPose | None: ...


def unit_vector(vector: np.ndarray) -> np.ndarray:
    """`vector` as float32 with unit L2 norm (a zero vector stays zero)."""
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec
