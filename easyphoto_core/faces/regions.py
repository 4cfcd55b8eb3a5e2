"""Face and skin masks from a detection (and dense landmarks when there are), and skin retouch."""

from __future__ import annotations

import cv2
import numpy as np

from easyphoto_core.faces.base import DenseLandmarks, FaceDetection
from easyphoto_core.faces.geometry import dilate_mask, ellipse_mask, polygon_mask

# Loose YCrCb skin range (Chai & Ngan 1999, widened): keeps hair, glasses and background out of
# the skin mask whatever the skin tone, since the Cr/Cb plane separates skin from most of those.
_SKIN_CR = (128, 180)
_SKIN_CB = (70, 135)


def face_region_mask(
    shape: tuple[int, int], face: FaceDetection, dense: DenseLandmarks | None = None
) -> np.ndarray:
    """The face (forehead to chin, cheek to cheek) as a 0/255 mask of `shape` (H, W).

    Without a mesh: the ellipse inscribed in the detector's box joined with an ellipse placed by
    the 5 landmarks (detectors' boxes differ: dlib's stops at the lips, YuNet's reaches the chin).
    With a mesh: also the mesh's face oval, which follows the real jaw line.
    """
    mask = np.maximum(ellipse_mask(face.box, shape, scale=1.05), landmark_face_ellipse(face, shape))
    oval = None if dense is None else dense.region("face_oval")
    if oval is not None and len(oval) >= 3:
        mask = np.maximum(mask, polygon_mask(oval, shape))
    # the landmarks themselves must be inside whatever the box looked like
    hull = polygon_mask(_padded_landmarks(face), shape)
    return np.maximum(mask, hull)


def landmark_face_ellipse(face: FaceDetection, shape: tuple[int, int]) -> np.ndarray:
    """Forehead-to-chin ellipse from the 5 landmarks alone, turned with the eye line.

    Proportions measured on YuNet's boxes of frontal faces, in eye-to-mouth distances (em): the
    face spans ~1.0 em above the eyes to ~0.9 em below the mouth, and ~2.15 eye distances wide.
    """
    pts = np.asarray(face.landmarks5, dtype=np.float64)
    eye_mid, mouth_mid = (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2
    eye_distance = float(np.linalg.norm(pts[1] - pts[0]))
    eye_to_mouth = float(np.linalg.norm(mouth_mid - eye_mid))
    centre = eye_mid + 0.45 * (mouth_mid - eye_mid)
    axes = (max(1, round(1.1 * eye_distance)), max(1, round(1.47 * eye_to_mouth)))
    angle = float(np.degrees(np.arctan2(pts[1, 1] - pts[0, 1], pts[1, 0] - pts[0, 0])))
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 255, -1)
    return mask


def _padded_landmarks(face: FaceDetection) -> np.ndarray:
    pts = np.asarray(face.landmarks5, dtype=np.float64)
    centre = pts.mean(axis=0)
    return centre + (pts - centre) * 1.3


def skin_mask(
    image: np.ndarray, face: FaceDetection, dense: DenseLandmarks | None = None
) -> np.ndarray:
    """Skin of the face: the face region without eyes, brows and lips, where the colour is skin."""
    height, width = image.shape[:2]
    shape = (height, width)
    region = face_region_mask(shape, face, dense)
    features = _feature_mask(shape, face, dense)
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    skin_colour = cv2.inRange(ycrcb, (0, _SKIN_CR[0], _SKIN_CB[0]), (255, _SKIN_CR[1], _SKIN_CB[1]))
    mask = cv2.bitwise_and(region, skin_colour)
    return cv2.bitwise_and(mask, cv2.bitwise_not(features))


def _feature_mask(
    shape: tuple[int, int], face: FaceDetection, dense: DenseLandmarks | None
) -> np.ndarray:
    """Eyes, brows and lips (kept sharp by the retouch), grown a little."""
    eye_distance = float(np.linalg.norm(face.landmarks5[1] - face.landmarks5[0]))
    mask = np.zeros(shape, dtype=np.uint8)
    names = ("left_eye", "right_eye", "left_brow", "right_brow", "lips")
    outlines = [] if dense is None else [dense.region(n) for n in names]
    outlines = [pts for pts in outlines if pts is not None and len(pts) >= 3]
    if outlines:
        for pts in outlines:
            mask = np.maximum(mask, polygon_mask(pts, shape))
        return dilate_mask(mask, max(1, round(eye_distance * 0.06)))
    # 5 landmarks only: discs over the eyes (with the brows above them) and an ellipse on the mouth
    radius = max(2, round(eye_distance * 0.35))
    for eye in face.landmarks5[:2]:
        cv2.circle(mask, (round(eye[0]), round(eye[1] - radius * 0.4)), radius, 255, -1)
    mouth_a, mouth_b = face.landmarks5[3], face.landmarks5[4]
    centre = (mouth_a + mouth_b) / 2
    half_width = max(2, round(float(np.linalg.norm(mouth_b - mouth_a)) * 0.65))
    angle = float(np.degrees(np.arctan2(*(mouth_b - mouth_a)[::-1])))
    axes = (half_width, max(2, round(half_width * 0.55)))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 255, -1)
    return mask


def retouch_skin(image: np.ndarray, skin: np.ndarray, *, strength: float = 0.8) -> np.ndarray:
    """Edge-preserving smoothing (bilateral filter) blended in on `skin` only.

    The blend weight is the skin mask feathered and scaled by `strength`, so pixels outside the
    skin keep their exact values and the transition leaves no seam.
    """
    if not skin.any():
        return image.copy()
    ys, xs = np.nonzero(skin)
    face_size = max(int(xs.max() - xs.min()), int(ys.max() - ys.min()), 1)
    sigma_space = max(2.0, face_size / 40)
    margin = int(3 * sigma_space) + 2
    y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, image.shape[0])
    x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, image.shape[1])
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    smoothed = cv2.bilateralFilter(region, d=0, sigmaColor=22, sigmaSpace=sigma_space)
    weight = cv2.GaussianBlur(skin[y0:y1, x0:x1].astype(np.float32) / 255.0, (0, 0), sigma_space)
    weight = np.minimum(weight, skin[y0:y1, x0:x1] / 255.0)[..., None] * strength
    out = image.copy()
    blended = region * (1.0 - weight) + smoothed * weight
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
