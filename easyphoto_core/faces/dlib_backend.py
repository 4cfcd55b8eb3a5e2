"""dlib backends: HOG face detector, 5-point shape predictor, 128-d identity embedding.

Embedded default that works offline: `dlib-bin` (prebuilt dlib) and the model files of
`face-recognition-models`. Those files are found through the package's import spec, without
importing it: its `__init__` imports `pkg_resources`, which setuptools >= 81 no longer has.
dlib's 68-point model is never used (its training set forbids commercial use); the 5-point model
and the ResNet embedding are public domain.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from easyphoto_core.faces.base import FaceDetection, FaceModelError, unit_vector
from easyphoto_core.faces.geometry import (
    ARCFACE_TEMPLATE_112,
    apply_transform,
    similarity_transform,
)

SHAPE_5_FILE = "shape_predictor_5_face_landmarks.dat"
EMBEDDING_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# dlib's documented decision threshold is an L2 distance of 0.6 between raw descriptors, whose
# norms are 1.35-1.6 (measured on the test photos): for unit vectors that is a cosine similarity
# of about 1 - 0.6^2 / (2 * 1.4^2) = 0.908. On the test photos same-person pairs score >= 0.95
# and different people <= 0.83.
DLIB_SAME_PERSON_SIMILARITY = 1.0 - 0.6**2 / (2 * 1.4**2)


def import_dlib() -> ModuleType:
    try:
        import dlib
    except ImportError as error:
        raise FaceModelError(
            "dlib is not installed: `pip install dlib-bin` (prebuilt wheels; plain `dlib` "
            f"compiles from source) ({error})"
        ) from error
    return dlib


def dlib_models_dir(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder with dlib's .dat files: `models_dir`, else face_recognition_models' own."""
    if models_dir is not None:
        folder = Path(models_dir)
    else:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FaceModelError(
                "face-recognition-models is not installed: `pip install face-recognition-models`"
                " (dlib's 5-point landmark and identity embedding files)."
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [name for name in (SHAPE_5_FILE, EMBEDDING_FILE) if not (folder / name).is_file()]
    if missing:
        raise FaceModelError(f"dlib model files missing in {folder}: {', '.join(missing)}")
    return folder


def dlib_face_rect(dlib: ModuleType, landmarks5: np.ndarray) -> object:
    """The box dlib's shape predictor was trained on, derived from 5 landmarks.

    dlib's 5-point model expects its own HOG detector's square boxes; other detectors' boxes are
    taller (YuNet includes the forehead). Measured on dlib's boxes: the centre lies halfway
    between the eye midpoint and the mouth midpoint, and the side is 1.2 x (eye distance +
    eye-to-mouth distance). Deriving the box from landmarks makes every detector feed dlib alike.
    """
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    eye_mid, mouth_mid = (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2
    side = 1.2 * (np.linalg.norm(pts[1] - pts[0]) + np.linalg.norm(mouth_mid - eye_mid))
    cx, cy = (eye_mid + mouth_mid) / 2
    half = side / 2
    return dlib.rectangle(round(cx - half), round(cy - half), round(cx + half), round(cy + half))


class DlibDetector:
    """`FaceDetector` on dlib's HOG detector + 5-point shape predictor.

    dlib's 5 points are eye corners and the base of the nose; the mouth corners, which it does not
    have, are placed by fitting ArcFace's template to the eyes. Good enough to crop and align; the
    fallback for when YuNet's file cannot be had.
    """

    name = "dlib_hog"

    def __init__(self, models_dir: str | os.PathLike[str] | None = None, *, max_side: int = 1024):
        self._dlib = import_dlib()
        folder = dlib_models_dir(models_dir)
        self._hog = self._dlib.get_frontal_face_detector()
        self._shape = self._dlib.shape_predictor(str(folder / SHAPE_5_FILE))
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = image
        if scale < 1.0:
            small = cv2.resize(image, (round(width * scale), round(height * scale)),
                               interpolation=cv2.INTER_AREA)
        # HOG only finds faces of >= 80 px: upsample small photos once
        upsample = 1 if max(small.shape[:2]) < 800 else 0
        rects, scores, _ = self._hog.run(np.ascontiguousarray(small), upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            shape = self._shape(small, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) / scale
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1]) / scale
            # HOG scores are SVM margins (0 = threshold); squash them into (0, 1)
            confidence = float(1.0 / (1.0 + np.exp(-2.0 * score)))
            faces.append(FaceDetection(box, five_points_from_dlib(points), confidence))
        return sorted(faces, key=lambda face: -face.score)


def five_points_from_dlib(points: np.ndarray) -> np.ndarray:
    """dlib's 5 points (image-right eye outer/inner, image-left eye outer/inner, nose base) ->
    our 5 landmarks (eye centres, nose, mouth corners estimated from ArcFace's template)."""
    left_eye = (points[2] + points[3]) / 2  # the eye on the image's left
    right_eye = (points[0] + points[1]) / 2
    eyes = np.stack([left_eye, right_eye])
    matrix = similarity_transform(ARCFACE_TEMPLATE_112[:2], eyes)
    mouth = apply_transform(matrix, ARCFACE_TEMPLATE_112[3:5])
    return np.vstack([eyes, points[4][None, :], mouth])


class DlibEmbedder:
    """`FaceEmbedder`: dlib's ResNet 128-d face descriptor, unit-normalised."""

    name = "dlib_resnet128"
    dim = 128
    same_person_similarity = DLIB_SAME_PERSON_SIMILARITY

    def __init__(self, models_dir: str | os.PathLike[str] | None = None) -> None:
        self._dlib = import_dlib()
        folder = dlib_models_dir(models_dir)
        self._shape = self._dlib.shape_predictor(str(folder / SHAPE_5_FILE))
        self._model = self._dlib.face_recognition_model_v1(str(folder / EMBEDDING_FILE))

    def embed(self, image: np.ndarray, face: FaceDetection) -> np.ndarray:
        rgb = np.ascontiguousarray(image)
        shape = self._shape(rgb, dlib_face_rect(self._dlib, face.landmarks5))
        # num_jitters=0: one pass; jittering costs x(n+1) time for a small gain
        descriptor = self._model.compute_face_descriptor(rgb, shape, 0)
        return unit_vector(np.array(descriptor, dtype=np.float32))
