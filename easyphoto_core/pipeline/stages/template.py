"""Stage 1: the template's faces, sorted left to right and paired with user ids.

Coordinates follow `easyphoto_core.faces.geometry`: RGB uint8 images, (x, y) points, boxes
(x0, y0, x1, y1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from easyphoto_core.faces import (
    DenseLandmarks,
    FaceDetection,
    FaceDetector,
    LandmarkModel,
    apply_transform,
)

# EasyPhoto's UI offers at most five user ids per template.
MAX_USER_IDS = 5
# A template face scoring below this fraction of the best face's detection score is not a slot.
# Measured on the shipped astronaut template with dlib's HOG detector (the offline fallback when
# YuNet is absent): the face scores 0.92, a "face" on the suit 0.56 (0.61 of it) — left to right
# it came first and took the only user id, painting the face onto the chest. Real faces of one
# photo: the weakest scores 0.79 of the best with dlib (group6.jpg, six faces), 0.97 with YuNet.
MIN_RELATIVE_SCORE = 0.7


class TemplateFaceError(ValueError):
    """The template cannot be paired with the user ids; the message says why, with counts."""


@dataclass(frozen=True)
class LocatedFace:
    """A detected face and, when a face mesh ran, its dense landmarks (same image, same pixels)."""

    detection: FaceDetection
    dense: DenseLandmarks | None = None

    @property
    def box(self) -> np.ndarray:
        return self.detection.box

    @property
    def landmarks5(self) -> np.ndarray:
        return self.detection.landmarks5

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks5[1] - self.landmarks5[0]))

    @property
    def centre(self) -> np.ndarray:
        box = self.box
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float64)

    def transformed(self, matrix: np.ndarray) -> LocatedFace:
        """The same face in another image, given the 2x3 matrix from this image to that one.

        The box is re-derived from its mapped corners (axis-aligned bounds), which is exact for
        the scale-and-shift matrices of crops and a slight overestimate under rotation.
        """
        corners = np.array(
            [[self.box[0], self.box[1]], [self.box[2], self.box[1]],
             [self.box[0], self.box[3]], [self.box[2], self.box[3]]]
        )
        mapped = apply_transform(matrix, corners)
        box = np.array([*mapped.min(axis=0), *mapped.max(axis=0)], dtype=np.float64)
        detection = FaceDetection(
            box=box,
            landmarks5=apply_transform(matrix, self.landmarks5),
            score=self.detection.score,
        )
        dense = None
        if self.dense is not None:
            dense = DenseLandmarks(
                points=apply_transform(matrix, self.dense.points), regions=self.dense.regions
            )
        return LocatedFace(detection=detection, dense=dense)


@dataclass(frozen=True)
class TemplateFace:
    """One template face: `position` 0.. counts faces left to right; `user_id` None = left alone."""

    position: int
    face: LocatedFace
    user_id: str | None


def locate_faces(
    image: np.ndarray,
    *,
    detector: FaceDetector,
    landmarks: LandmarkModel | None = None,
    min_relative_size: float = 0.0,
) -> list[LocatedFace]:
    """Every face of `image` sorted left to right (by box centre), with dense landmarks when a
    landmark model is given. Faces whose box short side is below `min_relative_size` x the
    largest face's are dropped: passers-by in the background are not anyone's slot; so are
    detections far less confident than the best one (MIN_RELATIVE_SCORE)."""
    detections = detector.detect(image)
    if detections:
        best = max(face.score for face in detections)
        detections = [f for f in detections if f.score >= MIN_RELATIVE_SCORE * best]
    if detections and min_relative_size > 0:
        largest = max(face.short_side for face in detections)
        detections = [f for f in detections if f.short_side >= min_relative_size * largest]
    detections = sorted(detections, key=lambda face: float(face.box[0] + face.box[2]))
    located = []
    for detection in detections:
        dense = None if landmarks is None else landmarks.landmarks(image, detection)
        located.append(LocatedFace(detection=detection, dense=dense))
    return located


def locate_main_face(
    image: np.ndarray,
    *,
    detector: FaceDetector,
    landmarks: LandmarkModel | None = None,
    what: str = "image",
) -> LocatedFace:
    """The largest face of `image` (a user's reference photo or face-id image).

    Raises TemplateFaceError naming `what` when the image has no face.
    """
    detections = detector.detect(image)
    if not detections:
        raise TemplateFaceError(f"no face found in the {what}")
    detection = max(detections, key=lambda face: face.area)
    dense = None if landmarks is None else landmarks.landmarks(image, detection)
    return LocatedFace(detection=detection, dense=dense)


def check_user_count(user_ids: Sequence[str | None]) -> None:
    """Raise TemplateFaceError unless 1 to MAX_USER_IDS user ids are chosen (None skips a face)."""
    chosen = [user_id for user_id in user_ids if user_id is not None]
    if not chosen:
        raise TemplateFaceError("no user id chosen: choose 1 to 5 user ids")
    if len(chosen) > MAX_USER_IDS:
        raise TemplateFaceError(
            f"{len(chosen)} user ids chosen; at most {MAX_USER_IDS} fit one template"
        )


def pair_faces_with_users(
    faces: Sequence[LocatedFace], user_ids: Sequence[str | None]
) -> list[TemplateFace]:
    """Pair faces (already sorted left to right) with `user_ids` in order.

    `user_ids[i]` goes to the i-th face from the left; None skips a face, and faces beyond the
    list are left alone. Raises TemplateFaceError when no user id is given, more than
    MAX_USER_IDS are, the template has no face, or there are more user id slots than faces.
    """
    check_user_count(user_ids)
    if not faces:
        raise TemplateFaceError("no face found in the template")
    if len(user_ids) > len(faces):
        raise TemplateFaceError(
            f"the template has {len(faces)} face{'s' if len(faces) != 1 else ''} but "
            f"{len(user_ids)} user ids were given: choose a template with at least "
            f"{len(user_ids)} faces or fewer user ids"
        )
    return [
        TemplateFace(
            position=position,
            face=face,
            user_id=user_ids[position] if position < len(user_ids) else None,
        )
        for position, face in enumerate(faces)
    ]
