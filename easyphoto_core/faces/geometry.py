"""Face geometry without any model: boxes, similarity warps, masks, a frontal-pose score.

Conventions (shared by every module in `easyphoto_core.faces`):

- Images are ``H x W x 3`` uint8 RGB arrays; masks are ``H x W`` uint8 arrays, 0 or 255.
- Points are ``(x, y)`` float pairs in OpenCV's pixel coordinates: x to the right, y down, the
  centre of pixel ``(row i, column j)`` at ``(j, i)``.
- A box is ``(x0, y0, x1, y1)`` as a float array of 4, with ``x1 = x0 + width``: the pixels it
  covers are columns ``floor(x0) .. ceil(x1) - 1``.
- The 5 face landmarks are, in this order: the eye that appears on the image's left (the
  subject's right eye), the other eye, the nose tip, the mouth corner on the image's left, the
  other mouth corner. This is the order of YuNet, RetinaFace/SCRFD and ArcFace's template.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# ArcFace's 112x112 alignment template (insightface), in the 5-landmark order above.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def box_size(box: np.ndarray) -> tuple[float, float]:
    """(width, height) of a box."""
    return float(box[2] - box[0]), float(box[3] - box[1])


def clamp_box(box: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The part of `box` inside an image of `image_size` = (width, height)."""
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array(
        [min(max(x0, 0.0), width), min(max(y0, 0.0), height),
         min(max(x1, 0.0), width), min(max(y1, 0.0), height)],
        dtype=np.float64,
    )


def expand_box(box: np.ndarray, ratio: float, image_size: tuple[int, int]) -> np.ndarray:
    """`box` scaled by `ratio` about its centre, then clamped to the image (width, height)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) * ratio / 2, (y1 - y0) * ratio / 2
    return clamp_box(np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h]), image_size)


def square_crop_box(box: np.ndarray, ratio: float, image_size: tuple[int, int]) -> np.ndarray:
    """Integer square around `box`: side = longer box side x `ratio`, inside the image.

    Training crops must be square (they are resized to resolution x resolution without
    distortion). Where the square would leave the image it is shifted back in rather than cut,
    so the face stays whole; only when the image is too small for the full side does the side
    shrink, to the image's shorter side. The result contains `box` whenever a square covering
    the box's pixels fits in the image.
    """
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in clamp_box(box, image_size))
    # at least the whole pixels the box touches, so that ratio 1 still holds the face
    needed = max(math.ceil(x1) - math.floor(x0), math.ceil(y1) - math.floor(y0), 1)
    side = int(min(max(round(max(x1 - x0, y1 - y0) * ratio), needed), width, height))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = _fit_interval(cx - side / 2, side, width, keep=(x0, x1))
    top = _fit_interval(cy - side / 2, side, height, keep=(y0, y1))
    return np.array([left, top, left + side, top + side], dtype=np.float64)


def _fit_interval(start: float, length: int, limit: int, *, keep: tuple[float, float]) -> int:
    """Integer start of [start, start+length) moved inside [0, limit), covering `keep` if it can."""
    lowest, highest = 0, limit - length
    # starts whose window covers `keep`, within the image; nearest to the centred start wins
    covering_low = max(lowest, math.ceil(keep[1] - length - 1e-9))
    covering_high = min(highest, math.floor(keep[0] + 1e-9))
    if covering_low <= covering_high:
        lowest, highest = covering_low, covering_high
    return int(min(max(round(start), lowest), highest))


# --- similarity transforms -----------------------------------------------------------------------


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity (rotation, uniform scale, translation) that maps `src`
    points onto `dst` points best in least squares (Umeyama 1991; no reflection)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need >= 2 matching points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0  # the best orthogonal map would be a reflection: take the rotation
    rotation = u @ sign @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = float(np.trace(np.diag(singular) @ sign) / src_var) if src_var > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N x 2) mapped by a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix, dtype=np.float64)[:, :2].T + matrix[:, 2]


def warp_face(
    image: np.ndarray,
    landmarks5: np.ndarray,
    *,
    template: np.ndarray = ARCFACE_TEMPLATE_112,
    output_size: tuple[int, int] = (112, 112),
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that `landmarks5` land on `template`; returns (warped image, 2x3 matrix)."""
    matrix = similarity_transform(landmarks5, template)
    warped = cv2.warpAffine(
        image, matrix, output_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return warped, matrix


def crop_transform(crop_box: np.ndarray, output_side: int) -> np.ndarray:
    """2x3 matrix mapping original-image points into a crop resized to output_side^2.

    cv2.resize maps pixel centres, so the scale applies to (x + 0.5) and 0.5 comes back off.
    """
    scale_x = output_side / float(crop_box[2] - crop_box[0])
    scale_y = output_side / float(crop_box[3] - crop_box[1])
    return np.array(
        [[scale_x, 0.0, (0.5 - crop_box[0]) * scale_x - 0.5],
         [0.0, scale_y, (0.5 - crop_box[1]) * scale_y - 0.5]],
        dtype=np.float64,
    )


def transform_box(matrix: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Axis-aligned bounds of `box`'s corners mapped by `matrix`."""
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
    mapped = apply_transform(matrix, corners)
    return np.array([*mapped.min(axis=0), *mapped.max(axis=0)], dtype=np.float64)


# --- masks ---------------------------------------------------------------------------------------


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by `radius` pixels with a disc (radius 0 returns a copy)."""
    if radius <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel)


def ellipse_mask(box: np.ndarray, shape: tuple[int, int], *, scale: float = 1.0) -> np.ndarray:
    """A filled ellipse inscribed in `box` (scaled about its centre), as a 0/255 mask."""
    mask = np.zeros(shape, dtype=np.uint8)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    axes = (max(1, round((box[2] - box[0]) * scale / 2)), max(1, round((box[3] - box[1]) * scale / 2)))
    cv2.ellipse(mask, (round(cx), round(cy)), axes, 0, 0, 360, 255, thickness=-1)
    return mask


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The convex hull of `points`, filled, as a 0/255 mask."""
    mask = np.zeros(shape, dtype=np.uint8)
    hull = cv2.convexHull(np.round(np.asarray(points, dtype=np.float64)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    return mask


# --- pose ----------------------------------------------------------------------------------------


def frontal_score(landmarks5: np.ndarray) -> float:
    """How frontal a face is, from its 5 landmarks: 1 = looking at the camera, towards 0 = turned.

    The face is rotated upright (eye line horizontal) and measured in eye-distance units: yaw
    moves the nose off the midline between the eyes and between the mouth corners, pitch moves it
    up or down between the eye line and the mouth line. Invariant to in-plane rotation, scale and
    translation, since alignment undoes those anyway.
    """
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    eye_a, eye_b, nose, mouth_a, mouth_b = pts
    eye_vector = eye_b - eye_a
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < 1e-6:
        return 0.0
    angle = math.atan2(eye_vector[1], eye_vector[0])
    rotation = np.array([[math.cos(-angle), -math.sin(-angle)], [math.sin(-angle), math.cos(-angle)]])
    eye_mid, mouth_mid = (eye_a + eye_b) / 2, (mouth_a + mouth_b) / 2
    nose_u, mouth_u = (rotation @ (p - eye_mid) / eye_distance for p in (nose, mouth_mid))
    if mouth_u[1] <= 1e-6:
        return 0.0  # mouth above the eyes: upside down or broken landmarks
    yaw = nose_u[0] - mouth_u[0] * nose_u[1] / mouth_u[1]  # nose off the eye-mouth midline
    pitch = nose_u[1] / mouth_u[1] - 0.55  # nose at ~0.55 of the eye-mouth height when frontal
    return float(math.exp(-((yaw / 0.18) ** 2) - ((pitch / 0.25) ** 2)))
