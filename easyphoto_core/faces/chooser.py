"""`FaceModels`: the face backends loaded once by their owner, best available first.

Preference (DESIGN.md §3): identity = insightface ArcFace when its pack and onnxruntime are there,
else dlib; detection = YuNet (registry file), else dlib HOG; dense landmarks, person segmentation
and pose = MediaPipe when it imports. A missing optional backend is logged and noted in
`skipped` (shown in reports), never an error; only "no detector" or "no embedder" is.
There is no module-level cache: whoever needs faces (a preprocess job, the trainer, the
generation pipeline) creates one `FaceModels` and passes it around, and closes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from easyphoto_core import weights
from easyphoto_core.faces.base import (
    FaceDetector,
    FaceEmbedder,
    FaceModelError,
    LandmarkModel,
    PersonSegmenter,
    PoseEstimator,
)
from easyphoto_core.faces.dlib_backend import DlibDetector, DlibEmbedder
from easyphoto_core.faces.insightface_backend import ArcFaceEmbedder, find_insightface_pack
from easyphoto_core.faces.mediapipe_backend import (
    MediaPipeFaceMesh,
    MediaPipePose,
    MediaPipeSelfieSegmenter,
)
from easyphoto_core.faces.yunet import YuNetDetector, yunet_model_path

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class FaceModels:
    """The loaded backends. `skipped` maps a backend name to why it is not used."""

    detector: FaceDetector
    embedder: FaceEmbedder
    landmarks: LandmarkModel | None = None
    segmenter: PersonSegmenter | None = None
    pose: PoseEstimator | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        paths: weights.WeightPaths | None = None,
        *,
        offline: bool | None = None,
        use_insightface: bool = True,
        use_mediapipe: bool = True,
        load_pose: bool = False,
        backend: str = "auto",
    ) -> FaceModels:
        """Load the best available backends (`paths` None = `WeightPaths.standalone()`).

        `offline` is passed to the weights registry (None = `$EASYPHOTO_OFFLINE`). Pose is loaded
        only on request: preprocessing does not need it.
        """
        paths = paths if paths is not None else weights.WeightPaths.standalone()
        skipped: dict[str, str] = {}
        if backend not in FACE_BACKENDS:
            raise FaceModelError(f"Unknown face backend {backend!r}: choose one of "
                                 f"{', '.join(FACE_BACKENDS)}.")
        detectors: list[tuple[str, Callable[[], FaceDetector]]] = [
            ("yunet", lambda: _load_yunet(paths, offline)), ("dlib_hog", _load_dlib_detector)]
        # a backend chosen in the settings is used alone: falling back would hide the choice
        if backend in ("yunet", "dlib"):
            detectors = [item for item in detectors if item[0].startswith(backend)]
        detector = _first_available(detectors, skipped, what="face detector")
        embedders: list[tuple[str, Callable[[], FaceEmbedder]]] = [("dlib", _load_dlib_embedder)]
        if backend == "insightface":
            embedders = [("insightface", lambda: _load_arcface(paths))]
        elif use_insightface and backend == "auto":
            embedders.insert(0, ("insightface", lambda: _load_arcface(paths)))
        else:
            skipped["insightface"] = "disabled by the caller"
        embedder = _first_available(embedders, skipped, what="identity embedder")
        models = cls(detector=detector, embedder=embedder, skipped=skipped)
        if use_mediapipe:
            models._load_mediapipe(load_pose=load_pose)
        else:
            skipped["mediapipe"] = "disabled by the caller"
        log.info("face models: %s", models.describe())
        return models

    def _load_mediapipe(self, *, load_pose: bool) -> None:
        loaders: list[tuple[str, Callable[[], Any]]] = [
            ("landmarks", MediaPipeFaceMesh),
            ("segmenter", MediaPipeSelfieSegmenter),
        ]
        if load_pose:
            loaders.append(("pose", MediaPipePose))
        for attribute, loader in loaders:
            try:
                setattr(self, attribute, loader())
            except FaceModelError as error:
                self.skipped[f"mediapipe_{attribute}"] = str(error)
                log.warning("face models: MediaPipe %s not used: %s", attribute, error)
                return  # the same import failure would repeat for the others

    def identity_score(self, image: np.ndarray, references: np.ndarray) -> float | None:
        """How much `image` shows the person of `references` (N x dim unit embeddings, e.g. a
        dataset's embeddings.npy): the mean similarity of its best-matching face, compared with
        `embedder.same_person_similarity`; None when the image has no face. For scoring
        validation images and generated portraits."""
        faces = self.detector.detect(image)
        if not faces:
            return None
        refs = np.asarray(references, dtype=np.float32).reshape(-1, self.embedder.dim)
        return max(float(np.mean(refs @ self.embedder.embed(image, face))) for face in faces)

    def describe(self) -> dict[str, Any]:
        """Backend names (None where absent) and skipped backends with reasons, for reports."""
        def name_of(backend: object | None) -> str | None:
            return None if backend is None else str(getattr(backend, "name", type(backend).__name__))

        return {
            "detector": name_of(self.detector),
            "embedder": name_of(self.embedder),
            "landmarks": name_of(self.landmarks),
            "segmenter": name_of(self.segmenter),
            "pose": name_of(self.pose),
            "same_person_similarity": float(self.embedder.same_person_similarity),
            "skipped": dict(self.skipped),
        }

    def close(self) -> None:
        for backend in (self.landmarks, self.segmenter, self.pose):
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        self.landmarks = self.segmenter = self.pose = None

    def __enter__(self) -> FaceModels:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


FACE_BACKENDS = ("auto", "dlib", "yunet", "insightface")


def _first_available(
    loaders: list[tuple[str, Callable[[], T]]], skipped: dict[str, str], *, what: str
) -> T:
    for name, loader in loaders:
        try:
            return loader()
        except FaceModelError as error:
            skipped[name] = str(error)
            log.warning("face models: %s %r not used: %s", what, name, error)
    reasons = "; ".join(f"{name}: {skipped[name]}" for name, _ in loaders)
    raise FaceModelError(f"no {what} available ({reasons})")


def _load_yunet(paths: weights.WeightPaths, offline: bool | None) -> FaceDetector:
    return YuNetDetector(yunet_model_path(paths, offline=offline))


def _load_dlib_detector() -> FaceDetector:
    return DlibDetector()


def _load_dlib_embedder() -> FaceEmbedder:
    return DlibEmbedder()


def _load_arcface(paths: weights.WeightPaths) -> FaceEmbedder:
    return ArcFaceEmbedder(find_insightface_pack(paths.insightface))
