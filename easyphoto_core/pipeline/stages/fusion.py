"""Stages 3 and 4: face fusion (before/after the first diffusion) and the replace image.

Both warp a source face (the user's reference photo, or their face-id image) onto a target face
(the template crop) by a similarity transform fitted to matching landmarks: all mesh points when
both faces have a MediaPipe mesh, else the 5 detector points. A similarity keeps the source
face's own proportions, which is what carries identity; the target keeps its pose and position.

Fusion then matches the warped face's colour to the target's (LAB, inside the blend region) and
blends it in at `ratio` over the target's skin, with the eyes from the source and the lips from
the target (EasyPhoto's face fusion keeps the template's mouth, so the expression stays, and the
user's eyes, which carry much of the likeness). Everything is deterministic OpenCV arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from easyphoto_core.faces import dilate_mask, similarity_transform
from easyphoto_core.faces.regions import face_region_mask, skin_mask
from easyphoto_core.pipeline.stages.color import color_shift
from easyphoto_core.pipeline.stages.masks import box_side, brow_mask, eye_mask, lips_mask
from easyphoto_core.pipeline.stages.template import LocatedFace

# Dense meshes have 468 points (478 with irises); fit on the points both faces have.
_MIN_DENSE_POINTS = 68


@dataclass(frozen=True)
class FusionResult:
    """image: the target with the source face blended in (same size as the target image).
    weight: float32 H x W in [0, 1], how much of the warped source each pixel took (0 = the
        target's pixel, unchanged).
    matrix: 2x3 float64, source image coordinates -> target image coordinates.
    source_face: the source face mapped into the target image (its landmarks where the warped
        face's features now lie: the replace image's pose keypoints come from these).
    """

    image: np.ndarray
    weight: np.ndarray
    matrix: np.ndarray
    source_face: LocatedFace


def alignment_matrix(source: LocatedFace, target: LocatedFace) -> np.ndarray:
    """2x3 similarity matrix taking `source`'s landmarks onto `target`'s (least squares)."""
    if source.dense is not None and target.dense is not None:
        count = min(len(source.dense.points), len(target.dense.points))
        if count >= _MIN_DENSE_POINTS:
            return similarity_transform(source.dense.points[:count], target.dense.points[:count])
    return similarity_transform(source.landmarks5, target.landmarks5)


def _warp_region(
    source_image: np.ndarray, matrix: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """The source image warped by `matrix`, computed only for the target `box` (x0, y0, x1, y1)."""
    shifted = matrix.copy()
    shifted[:, 2] -= (box[0], box[1])  # target coordinates relative to the box
    return cv2.warpAffine(
        source_image, shifted, (box[2] - box[0], box[3] - box[1]),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    height, width = mask.shape
    return (
        max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin),
        min(width, int(xs.max()) + 1 + margin), min(height, int(ys.max()) + 1 + margin),
    )


def _blend(
    target_image: np.ndarray,
    source_image: np.ndarray,
    matrix: np.ndarray,
    blend_mask: np.ndarray,
    *,
    color_mask: np.ndarray,
    ratio: float,
    feather_sigma: float,
    color_match: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the source into the target where `blend_mask` (feathered) says, at `ratio`; the
    colour match compares both inside `color_mask` (where both images show face)."""
    margin = int(3 * feather_sigma) + 2
    box = _bounding_box(blend_mask, margin)
    weight = np.zeros(blend_mask.shape, dtype=np.float32)
    if box is None or ratio <= 0:
        return target_image.copy(), weight
    x0, y0, x1, y1 = box
    target_region = np.ascontiguousarray(target_image[y0:y1, x0:x1])
    warped = _warp_region(source_image, matrix, box)
    local_mask = blend_mask[y0:y1, x0:x1]
    local_color_mask = color_mask[y0:y1, x0:x1]
    if color_match and local_color_mask.any():
        everywhere = np.ones(local_mask.shape, dtype=np.float32)
        warped = color_shift(warped, target_region, mask=local_color_mask, weight=everywhere)
    local_weight = cv2.GaussianBlur((local_mask > 0).astype(np.float32), (0, 0), feather_sigma)
    local_weight = np.clip(local_weight * ratio, 0.0, 1.0)
    weight[y0:y1, x0:x1] = local_weight
    mixed = target_region * (1.0 - local_weight[..., None]) + warped * local_weight[..., None]
    out = target_image.copy()
    blended = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(local_weight[..., None] > 0, blended, target_region)
    return out, weight


def fuse_face(
    target_image: np.ndarray,
    target_face: LocatedFace,
    source_image: np.ndarray,
    source_face: LocatedFace,
    *,
    ratio: float = 0.6,
    color_match: bool = True,
    feather: float = 0.12,
) -> FusionResult:
    """Blend the source face into the target face at `ratio` (GenerateParams'
    face_fusion_ratio_before/after; 0 returns the target unchanged).

    The blend region is the target's skin plus both faces' eyes and brows, minus both faces'
    lips, inside both face regions; its edge is feathered by a Gaussian of `feather` x eye
    distance. Brows go with the eyes: like them they carry likeness and the skin test drops them.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"fusion ratio must be in [0, 1], got {ratio}")
    matrix = alignment_matrix(source_face, target_face)
    warped_face = source_face.transformed(matrix)
    shape = target_image.shape[:2]
    regions = cv2.bitwise_and(
        face_region_mask(shape, target_face.detection, target_face.dense),
        face_region_mask(shape, warped_face.detection, warped_face.dense),
    )
    eyes = np.maximum(eye_mask(shape, target_face), eye_mask(shape, warped_face))
    eyes = np.maximum(eyes, np.maximum(brow_mask(shape, target_face), brow_mask(shape, warped_face)))
    lips = np.maximum(lips_mask(shape, target_face), lips_mask(shape, warped_face))
    skin = skin_mask(target_image, target_face.detection, target_face.dense)
    # the colour test leaves speckles (highlights, pores): close them at ~1/10 eye distance
    closing = max(3, round(0.1 * target_face.eye_distance) | 1)
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, np.ones((closing, closing), np.uint8))
    blend_mask = cv2.bitwise_and(np.maximum(skin, eyes), regions)
    blend_mask = cv2.bitwise_and(blend_mask, cv2.bitwise_not(lips))
    image, weight = _blend(
        target_image, source_image, matrix, blend_mask, color_mask=blend_mask,
        ratio=ratio, feather_sigma=max(1.0, feather * target_face.eye_distance),
        color_match=color_match,
    )
    return FusionResult(image=image, weight=weight, matrix=matrix, source_face=warped_face)


def replace_face(
    target_image: np.ndarray,
    target_face: LocatedFace,
    source_image: np.ndarray,
    source_face: LocatedFace,
    *,
    color_match: bool = True,
    feather: float = 0.12,
) -> FusionResult:
    """The replace image: the source's whole face region (eyes, lips and all) pasted onto the
    target face, where the target's own face is; the pose control input of the first diffusion.
    """
    matrix = alignment_matrix(source_face, target_face)
    warped_face = source_face.transformed(matrix)
    shape = target_image.shape[:2]
    target_region = face_region_mask(shape, target_face.detection, target_face.dense)
    # the source's face, but not beyond the target's head: a wider source face region would
    # bring the source photo's background along
    near_target = dilate_mask(target_region, round(0.1 * box_side(target_face)))
    blend_mask = cv2.bitwise_and(
        face_region_mask(shape, warped_face.detection, warped_face.dense), near_target
    )
    image, weight = _blend(
        target_image, source_image, matrix, blend_mask,
        color_mask=cv2.bitwise_and(blend_mask, target_region),
        ratio=1.0, feather_sigma=max(1.0, feather * target_face.eye_distance),
        color_match=color_match,
    )
    return FusionResult(image=image, weight=weight, matrix=matrix, source_face=warped_face)
