"""Stage 5: the masks of one face crop: inpaint masks of both diffusions and the paste weight.

Masks are H x W uint8 0/255 (geometry conventions); weights are H x W float32 in [0, 1].
Sizes are relative to the face ("box side" = the mean of the detector box's width and height)
so that they mean the same at any crop resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from easyphoto_core.faces import dilate_mask
from easyphoto_core.faces.geometry import polygon_mask
from easyphoto_core.faces.regions import face_region_mask
from easyphoto_core.pipeline.stages.template import LocatedFace


@dataclass(frozen=True)
class FaceMasks:
    """Masks of one face in one image (usually its crop).

    face: first-diffusion inpaint mask: the face region dilated by `dilation` x box side.
    ring: second-diffusion inpaint mask: a band across the face mask's edge, plus eyes and lips.
    eyes, lips: the eye and lip regions (grown a little).
    paste_weight: float32 weight for pasting the result back: 1 over the face mask, feathered
        across the ring's outer part, and exactly 0 outside everything either diffusion
        repainted (face mask grown by `ring_outer`), so the rest of the template stays as it was.
    """

    face: np.ndarray
    ring: np.ndarray
    eyes: np.ndarray
    lips: np.ndarray
    paste_weight: np.ndarray


def box_side(face: LocatedFace) -> float:
    """The face's size in pixels: mean of its box's width and height."""
    return max(1.0, (face.detection.width + face.detection.height) / 2)


def eye_mask(shape: tuple[int, int], face: LocatedFace, *, grow: float = 0.08) -> np.ndarray:
    """Both eyes: the mesh's eye outlines when there are, else discs on the 5-point eyes;
    grown by `grow` x eye distance so lashes and lids are included."""
    eye_distance = max(face.eye_distance, 1.0)
    outlines = _outlines(face, ("left_eye", "right_eye"))
    mask = np.zeros(shape, dtype=np.uint8)
    if outlines:
        for points in outlines:
            mask = np.maximum(mask, polygon_mask(points, shape))
    else:
        # eye opening ~0.45 x 0.2 eye distances; a disc of 0.25 covers it at any gaze
        radius = max(2, round(0.25 * eye_distance))
        for eye in face.landmarks5[:2]:
            cv2.circle(mask, (round(eye[0]), round(eye[1])), radius, 255, thickness=-1)
    return dilate_mask(mask, round(grow * eye_distance))


def brow_mask(shape: tuple[int, int], face: LocatedFace, *, grow: float = 0.05) -> np.ndarray:
    """Both eyebrows: the mesh's brow outlines when there are, else flat ellipses above the
    5-point eyes (brows sit ~0.35 eye distances above the pupils, ~0.65 wide)."""
    eye_distance = max(face.eye_distance, 1.0)
    outlines = _outlines(face, ("left_brow", "right_brow"))
    mask = np.zeros(shape, dtype=np.uint8)
    if outlines:
        for points in outlines:
            mask = np.maximum(mask, polygon_mask(points, shape))
    else:
        eye_a, eye_b = face.landmarks5[0], face.landmarks5[1]
        along = (eye_b - eye_a) / eye_distance
        up = np.array([along[1], -along[0]])  # the eye line turned a quarter towards the brow
        angle = float(np.degrees(np.arctan2(along[1], along[0])))
        axes = (max(2, round(0.33 * eye_distance)), max(1, round(0.08 * eye_distance)))
        for eye in (eye_a, eye_b):
            centre = eye + up * 0.35 * eye_distance
            cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 255, -1)
    return dilate_mask(mask, round(grow * eye_distance))


def lips_mask(shape: tuple[int, int], face: LocatedFace, *, grow: float = 0.06) -> np.ndarray:
    """The lips (and the mouth between them): the mesh's lip outline when there is, else an
    ellipse through the 5-point mouth corners; grown by `grow` x eye distance."""
    eye_distance = max(face.eye_distance, 1.0)
    outlines = _outlines(face, ("lips",))
    if outlines:
        mask = polygon_mask(outlines[0], shape)
    else:
        mask = np.zeros(shape, dtype=np.uint8)
        corner_a, corner_b = face.landmarks5[3], face.landmarks5[4]
        centre = (corner_a + corner_b) / 2
        half_width = max(2, round(float(np.linalg.norm(corner_b - corner_a)) * 0.55))
        angle = float(np.degrees(np.arctan2(corner_b[1] - corner_a[1], corner_b[0] - corner_a[0])))
        # lips are about 0.4 x as tall as wide (both lips together, mouth closed)
        axes = (half_width, max(2, round(half_width * 0.4)))
        cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 255, -1)
    return dilate_mask(mask, round(grow * eye_distance))


def _outlines(face: LocatedFace, names: tuple[str, ...]) -> list[np.ndarray]:
    if face.dense is None:
        return []
    outlines = [face.dense.region(name) for name in names]
    if any(points is None or len(points) < 3 for points in outlines):
        return []  # all or nothing: a half-mesh mixes two layouts
    return [points for points in outlines if points is not None]


def feather_inside(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` as a float32 weight that ramps from 0 at its edge to 1 `radius` pixels inside.

    Opening-then-blur with the same square support: the mask is eroded by a (2r+1) square and
    blurred with a (2r+1) kernel, so every non-zero weight lies inside the original mask (pixels
    outside it are provably untouched by a paste with this weight).
    """
    weight = (mask > 0).astype(np.float32)
    if radius <= 0:
        return weight
    kernel_size = 2 * radius + 1
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel_size, kernel_size))
    eroded = cv2.erode(weight, square)
    blurred = cv2.GaussianBlur(eroded, (kernel_size, kernel_size), sigmaX=radius / 2.0)
    blurred[mask == 0] = 0.0  # float rounding aside, the support argument above already holds
    blurred[blurred > 1.0 - 1e-5] = 1.0  # a blurred plateau of ones sums to 0.99999994
    return np.clip(blurred, 0.0, 1.0)


def face_masks(
    shape: tuple[int, int],
    face: LocatedFace,
    *,
    dilation: float = 0.1,
    ring_outer: float = 0.25,
    ring_inner: float = 0.12,
    feather: float = 0.08,
) -> FaceMasks:
    """Every mask of `face` in an image of `shape` (H, W).

    dilation: GenerateParams.mask_dilation, as a fraction of the box side.
    ring_outer / ring_inner: how far the second-diffusion band reaches outside / inside the face
        mask's edge (EasyPhoto's 48 and 24 px at 512 are about 0.28 and 0.14 of a face).
    feather: width of the paste weight's ramp, as a fraction of the box side.
    """
    side = box_side(face)
    region = face_region_mask(shape, face.detection, face.dense)
    face_mask = dilate_mask(region, round(dilation * side))
    eyes, lips = eye_mask(shape, face), lips_mask(shape, face)
    outer = dilate_mask(face_mask, round(ring_outer * side))
    inner_radius = round(ring_inner * side)
    inner_kernel = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * inner_radius + 1, 2 * inner_radius + 1)
    )
    inner = cv2.erode(face_mask, inner_kernel) if inner_radius > 0 else face_mask
    ring = cv2.bitwise_and(outer, cv2.bitwise_not(inner))
    ring = np.maximum(ring, np.maximum(eyes, lips))
    # both diffusions repainted `outer` at most: paste all of it, fading out at its edge
    paste_weight = feather_inside(outer, max(1, round(feather * side)))
    return FaceMasks(face=face_mask, ring=ring, eyes=eyes, lips=lips, paste_weight=paste_weight)
