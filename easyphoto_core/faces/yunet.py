"""OpenCV's YuNet face detector (boxes + 5 landmarks) through `cv2.FaceDetectorYN`.

The 233 KB ONNX file comes from the weights registry (`weights.ensure`); the detector itself
ships in opencv-python(-headless) 4.8+ and runs on OpenCV 4.11 and 5.0.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from easyphoto_core import weights
from easyphoto_core.faces.base import FaceDetection, FaceModelError

YUNET_WEIGHT_NAME = "face_detection_yunet_2023mar"


class YuNetDetector:
    """`FaceDetector` on YuNet, safe to share between threads.

    OpenCV's detector takes the input size as state (`setInputSize`, then `detect`), so two
    threads on one instance could detect one image at the other's size: a lock holds the pair
    together (a detection takes milliseconds; the studio's jobs and requests share one instance).

    Large photos are shrunk to `max_side` before detection (YuNet finds faces down to ~10 px, so
    nothing we would accept is lost) and the results scaled back: detection time grows with the
    pixel count, and phone photos are 12+ megapixels.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 1280,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FaceModelError(f"YuNet model file not found: {path}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise FaceModelError(
                f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs opencv-python >= 4.8)."
            )
        self.model_path = path
        self.max_side = max_side
        # the input size is a placeholder: detect() sets it for every image
        self._detector = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), score_threshold, nms_threshold, 5000
        )
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._detector.detect(bgr)
        if rows is None:
            return []
        faces = [_row_to_detection(row, 1.0 / scale) for row in np.asarray(rows, dtype=np.float64)]
        return sorted(faces, key=lambda face: -face.score)


def _row_to_detection(row: np.ndarray, scale: float) -> FaceDetection:
    # row: x, y, w, h, 5 landmark (x, y) pairs, score. YuNet's landmark order is ours.
    x, y, w, h = row[:4] * scale
    box = np.array([x, y, x + w, y + h], dtype=np.float64)
    landmarks = row[4:14].reshape(5, 2) * scale
    return FaceDetection(box=box, landmarks5=landmarks, score=float(row[14]))


def yunet_model_path(
    paths: weights.WeightPaths | None = None, *, offline: bool | None = None
) -> Path:
    """The YuNet file through the weights registry (downloaded and verified if missing, unless
    offline); `paths` None = `WeightPaths.standalone()`."""
    try:
        return weights.ensure(YUNET_WEIGHT_NAME, paths, offline=offline)
    except weights.WeightsError as error:
        raise FaceModelError(f"YuNet face detector unavailable: {error}") from error
