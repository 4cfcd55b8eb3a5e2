"""Stage 4b: OpenPose control images drawn from landmarks, the way ControlNet's annotator draws.

ControlNet's openpose models were trained on images drawn by the OpenPose annotator, so we draw
our keypoints with exactly its layout, colours and strokes, as in sd-webui-controlnet
`annotator/openpose/util.py` (`draw_bodypose`, `draw_facepose`; the same code is in
lllyasviel/ControlNet-v1-1-nightly and controlnet_aux `open_pose/util.py`):

- 18 body keypoints in OpenPose's COCO order (OPENPOSE_BODY_PARTS); "right" is the subject's
  right, which appears on the image's left for a person facing the camera.
- Limbs: 17 keypoint pairs (`limbSeq`, 1-based there, 0-based in OPENPOSE_LIMBS), each a filled
  ellipse of half-width 4 px (`stickwidth`) along the segment, in the colour of its index in
  `colors`; then the whole canvas is multiplied by 0.6 (limbs come out dimmed).
- Keypoints: filled circles of radius 4 in `colors[keypoint index]`, drawn after the dimming,
  so they keep the exact colours below (RGB; the annotator's canvas is RGB).
- Face keypoints (OpenPose's 68 face points + 2 pupils): filled white circles of radius 3,
  drawn last; the annotator truncates coordinates to int pixels and skips a point unless both
  exceed `eps = 0.01`, i.e. points in row 0 or column 0 (its "missing" marker) are not drawn.

The keypoints come from our landmarks instead of the OpenPose network: body points from
MediaPipe pose when it found this person, and the head (nose, eyes, ears) and the 70 face points
from the face mesh, or from the 5 detector points when there is no mesh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from easyphoto_core.faces import BodyPose
from easyphoto_core.pipeline.stages.template import LocatedFace

OPENPOSE_BODY_PARTS = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
# sd-webui-controlnet draw_bodypose `limbSeq`, made 0-based.
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
# sd-webui-controlnet draw_bodypose `colors` (RGB): limb i and keypoint i use colours[i].
OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
STICK_HALF_WIDTH = 4
LIMB_DIMMING = 0.6
BODY_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3
FACE_POINT_COLOR = (255, 255, 255)

# MediaPipe face mesh indices of OpenPose's 68 face points (the iBUG layout: jaw 0-16 from the
# image's left, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67), read
# off MediaPipe's canonical face mesh; then the two iris centres (refined mesh) as pupils 68-69.
MESH_TO_OPENPOSE_FACE = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    78, 81, 13, 311, 308, 402, 14, 178,
)
MESH_PUPILS = (468, 473)
MESH_NOSE_TIP = 4
MESH_EAR_SIDES = (234, 454)  # the face oval at ear height, image-left then image-right


@dataclass(frozen=True)
class OpenPosePerson:
    """One person's keypoints in image pixels.

    body: 18 x 2 float64 in OPENPOSE_BODY_PARTS order, NaN rows for keypoints not found.
    face: K x 2 float64 face keypoints (70 from a mesh, the 5 detector points without one).
    """

    body: np.ndarray
    face: np.ndarray

    def point(self, name: str) -> np.ndarray | None:
        row = self.body[OPENPOSE_BODY_PARTS.index(name)]
        return None if np.isnan(row).any() else row


def openpose_person(
    face: LocatedFace,
    *,
    body: BodyPose | None = None,
    min_visibility: float = 0.5,
    hidden_ear_fraction: float = 0.15,
) -> OpenPosePerson:
    """Keypoints of the person whose face is `face` (all in the same image's pixels).

    `body` (MediaPipe pose of that image) supplies neck, shoulders, arms and legs when its nose
    lies within this face's box (a pose of someone else in a group crop is ignored); points below
    `min_visibility` are left out, as OpenPose leaves out what it cannot see. An ear closer to
    the nose than `hidden_ear_fraction` x box width (across the face) is taken as hidden by a
    turned head and left out too.
    """
    points = np.full((len(OPENPOSE_BODY_PARTS), 2), np.nan, dtype=np.float64)
    if body is not None and _pose_belongs_to(body, face):
        _fill_from_pose(points, body, min_visibility)
    head = _head_points(face)
    for name, point in head.items():
        points[OPENPOSE_BODY_PARTS.index(name)] = point
    nose = head["nose"]
    for ear in ("right_ear", "left_ear"):
        index = OPENPOSE_BODY_PARTS.index(ear)
        if not np.isnan(points[index]).any():
            across = abs(float(points[index][0] - nose[0]))
            if across < hidden_ear_fraction * face.detection.width:
                points[index] = np.nan
    return OpenPosePerson(body=points, face=_face_points(face))


def _pose_belongs_to(body: BodyPose, face: LocatedFace) -> bool:
    if "nose" not in body.names:
        return False
    nose = body.points[body.names.index("nose")]
    x0, y0, x1, y1 = face.box
    return bool(x0 <= nose[0] <= x1 and y0 <= nose[1] <= y1)


def _fill_from_pose(points: np.ndarray, body: BodyPose, min_visibility: float) -> None:
    visible = {
        name: body.points[i] for i, name in enumerate(body.names)
        if body.visibility[i] >= min_visibility
    }
    for index, name in enumerate(OPENPOSE_BODY_PARTS):
        if name in visible:
            points[index] = visible[name]
    if "left_shoulder" in visible and "right_shoulder" in visible:
        # OpenPose's neck is the midpoint of the shoulders (MediaPipe has no neck point)
        points[OPENPOSE_BODY_PARTS.index("neck")] = (
            visible["left_shoulder"] + visible["right_shoulder"]
        ) / 2


def _head_points(face: LocatedFace) -> dict[str, np.ndarray]:
    """Nose, eyes and ears from the face landmarks (more precise than a body model's)."""
    pts5 = face.landmarks5
    dense = face.dense
    if dense is not None and len(dense.points) > max(MESH_EAR_SIDES):
        mesh = dense.points
        has_irises = len(mesh) > max(MESH_PUPILS)
        eyes = mesh[list(MESH_PUPILS)] if has_irises else pts5[:2]
        return {
            "nose": mesh[MESH_NOSE_TIP], "right_eye": eyes[0], "left_eye": eyes[1],
            "right_ear": mesh[MESH_EAR_SIDES[0]], "left_ear": mesh[MESH_EAR_SIDES[1]],
        }
    # 5 points only: ears beside the eyes, a little lower (the tragus is about level with the
    # lower eyelid), one eye distance out from the eye midpoint along the eye line
    eye_mid, mouth_mid = (pts5[0] + pts5[1]) / 2, (pts5[3] + pts5[4]) / 2
    along, down = pts5[1] - pts5[0], mouth_mid - eye_mid
    return {
        "nose": pts5[2], "right_eye": pts5[0], "left_eye": pts5[1],
        "right_ear": eye_mid - 1.0 * along + 0.2 * down,
        "left_ear": eye_mid + 1.0 * along + 0.2 * down,
    }


def _face_points(face: LocatedFace) -> np.ndarray:
    dense = face.dense
    if dense is not None and len(dense.points) > max(MESH_TO_OPENPOSE_FACE):
        indices = list(MESH_TO_OPENPOSE_FACE)
        if len(dense.points) > max(MESH_PUPILS):
            indices += list(MESH_PUPILS)
        return dense.points[indices].astype(np.float64)
    return np.asarray(face.landmarks5, dtype=np.float64).copy()


def draw_openpose(people: Sequence[OpenPosePerson], size: tuple[int, int]) -> np.ndarray:
    """The OpenPose control image (H x W x 3 uint8 RGB, black background) of `people`, for an
    image of `size` = (width, height). Each person is drawn as the annotator draws one body
    (limbs, dimming, keypoints), then every face's points on top."""
    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        canvas = _draw_body(canvas, person.body)
    for person in people:
        _draw_face(canvas, person.face)
    return canvas


def _draw_body(canvas: np.ndarray, body: np.ndarray) -> np.ndarray:
    for (first, second), color in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS, strict=False):
        a, b = body[first], body[second]
        if np.isnan(a).any() or np.isnan(b).any():
            continue
        centre = (int(np.mean([a[0], b[0]])), int(np.mean([a[1], b[1]])))
        length = math.hypot(a[0] - b[0], a[1] - b[1])
        angle = math.degrees(math.atan2(a[1] - b[1], a[0] - b[0]))
        polygon = cv2.ellipse2Poly(
            centre, (int(length / 2), STICK_HALF_WIDTH), int(angle), 0, 360, 1
        )
        cv2.fillConvexPoly(canvas, polygon, color)
    canvas = (canvas * LIMB_DIMMING).astype(np.uint8)
    for point, color in zip(body, OPENPOSE_COLORS, strict=True):
        if np.isnan(point).any():
            continue
        cv2.circle(canvas, (int(point[0]), int(point[1])), BODY_POINT_RADIUS, color, thickness=-1)
    return canvas


def _draw_face(canvas: np.ndarray, face: np.ndarray) -> None:
    for x, y in face:
        column, row = int(x), int(y)
        if column >= 1 and row >= 1:  # the annotator's `x > eps and y > eps` on int pixels
            cv2.circle(canvas, (column, row), FACE_POINT_RADIUS, FACE_POINT_COLOR, thickness=-1)
