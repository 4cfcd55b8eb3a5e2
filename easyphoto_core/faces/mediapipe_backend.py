"""MediaPipe legacy solutions: face mesh (478 points), selfie segmentation, body pose.

Optional: used when `mediapipe` 0.10.x with its bundled models imports (0.10.21 is the last
release whose wheel bundles them; it needs protobuf 4.25.x). Nothing here imports mediapipe at
module import; each backend imports it when built and raises FaceModelError if it cannot.

A solution object runs one graph: `process` from two threads at once is not supported, and the
studio shares its face models between the job worker and request threads (a template upload
counts faces while a training preprocesses), so each wrapper holds a lock around `process`.
"""

from __future__ import annotations

import threading
from types import ModuleType

import cv2
import numpy as np

from easyphoto_core.faces.base import BodyPose, DenseLandmarks, FaceDetection, FaceModelError
from easyphoto_core.faces.geometry import expand_box


def import_mediapipe_solutions() -> ModuleType:
    """`mediapipe.solutions`, or FaceModelError saying why not (missing, protobuf clash...)."""
    try:
        import mediapipe as mp

        solutions = mp.solutions
        _ = solutions.face_mesh.FACEMESH_FACE_OVAL  # the legacy API with bundled graphs
    except Exception as error:  # a protobuf clash raises TypeError, not ImportError
        raise FaceModelError(
            "MediaPipe legacy solutions unavailable (needs mediapipe 0.10.x with bundled models,"
            f" e.g. mediapipe==0.10.21 with protobuf 4.25.x): {type(error).__name__}: {error}"
        ) from error
    return solutions


def _outline_indices(edges: frozenset[tuple[int, int]]) -> np.ndarray:
    return np.array(sorted({i for edge in edges for i in edge}), dtype=np.int64)


class MediaPipeFaceMesh:
    """`LandmarkModel`: MediaPipe face mesh (468 points + 10 iris points) of a detected face.

    The mesh runs on the face's neighbourhood (box x2), which is faster than the whole photo
    and, in a group photo, meshes the face we were asked about; of the meshes found there, the
    one centred nearest the detection wins.
    """

    name = "mediapipe_face_mesh"

    def __init__(self) -> None:
        solutions = import_mediapipe_solutions()
        mesh = solutions.face_mesh
        self._mesh = mesh.FaceMesh(
            static_image_mode=True, max_num_faces=3, refine_landmarks=True,
            min_detection_confidence=0.3,
        )
        self._lock = threading.Lock()
        # MediaPipe's left/right are the subject's: its LEFT_EYE appears on the image's right
        self.regions = {
            "face_oval": _outline_indices(mesh.FACEMESH_FACE_OVAL),
            "left_eye": _outline_indices(mesh.FACEMESH_RIGHT_EYE),
            "right_eye": _outline_indices(mesh.FACEMESH_LEFT_EYE),
            "left_brow": _outline_indices(mesh.FACEMESH_RIGHT_EYEBROW),
            "right_brow": _outline_indices(mesh.FACEMESH_LEFT_EYEBROW),
            "lips": _outline_indices(mesh.FACEMESH_LIPS),
        }

    def landmarks(self, image: np.ndarray, face: FaceDetection) -> DenseLandmarks | None:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = (int(round(v)) for v in expand_box(face.box, 2.0, (width, height)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        with self._lock:
            result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        centre = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
        best = None
        for found in result.multi_face_landmarks:
            pts = np.array([[p.x, p.y] for p in found.landmark], dtype=np.float64)
            pts = pts * [x1 - x0, y1 - y0] + [x0, y0]
            distance = float(np.linalg.norm(pts.mean(axis=0) - centre))
            if best is None or distance < best[0]:
                best = (distance, pts)
        return DenseLandmarks(points=best[1], regions=self.regions)

    def close(self) -> None:
        self._mesh.close()


class MediaPipeSelfieSegmenter:
    """`PersonSegmenter`: MediaPipe selfie segmentation (general model), thresholded at 0.5."""

    name = "mediapipe_selfie_segmentation"

    def __init__(self) -> None:
        solutions = import_mediapipe_solutions()
        self._segmenter = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self._lock = threading.Lock()

    def person_mask(self, image: np.ndarray) -> np.ndarray:
        with self._lock:
            result = self._segmenter.process(np.ascontiguousarray(image))
        probability = result.segmentation_mask
        if probability is None:
            return np.zeros(image.shape[:2], dtype=np.uint8)
        probability = cv2.GaussianBlur(probability, (0, 0), 1.0)  # soften the 256x256 staircase
        return np.where(probability > 0.5, 255, 0).astype(np.uint8)

    def close(self) -> None:
        self._segmenter.close()


class MediaPipePose:
    """`PoseEstimator`: MediaPipe pose (33 landmarks), model_complexity=1 (the bundled one)."""

    name = "mediapipe_pose"

    def __init__(self) -> None:
        solutions = import_mediapipe_solutions()
        self._pose = solutions.pose.Pose(static_image_mode=True, model_complexity=1)
        self._names = tuple(mark.name.lower() for mark in solutions.pose.PoseLandmark)
        self._lock = threading.Lock()

    def pose(self, image: np.ndarray) -> BodyPose | None:
        height, width = image.shape[:2]
        with self._lock:
            result = self._pose.process(np.ascontiguousarray(image))
        if result.pose_landmarks is None:
            return None
        marks = result.pose_landmarks.landmark
        points = np.array([[m.x * width, m.y * height] for m in marks], dtype=np.float64)
        visibility = np.array([m.visibility for m in marks], dtype=np.float64)
        return BodyPose(points=points, visibility=visibility, names=self._names)

    def close(self) -> None:
        self._pose.close()

