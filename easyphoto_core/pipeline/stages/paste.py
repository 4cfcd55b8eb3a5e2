"""Stage 7: paste generated crops back into the template, and the seam mask of several people.

Pixels where the paste weight is 0 are copied from the template untouched (bit-identical), so
nothing outside the feathered face region changes, whatever the resampling did near it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from easyphoto_core.faces import dilate_mask
from easyphoto_core.pipeline.stages.crop import FaceCrop


@dataclass(frozen=True)
class PastePiece:
    """One generated crop to paste: `image` of any size with the crop's aspect (the second
    diffusion may run larger), its `crop`, and its float32 `weight` (e.g. FaceMasks.paste_weight)
    of the same size as `image` or as the crop."""

    image: np.ndarray
    crop: FaceCrop
    weight: np.ndarray


@dataclass(frozen=True)
class PasteResult:
    """image: the template with the pieces pasted (the template's size).
    weight: float32 template-size map, the largest weight any piece took at each pixel;
        0 marks pixels that are the template's, bit for bit."""

    image: np.ndarray
    weight: np.ndarray


def _resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] < image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)


def paste_faces(template: np.ndarray, pieces: Sequence[PastePiece]) -> PasteResult:
    """Paste every piece into its crop box, in order (later pieces over earlier ones)."""
    out = template.copy()
    weight_map = np.zeros(template.shape[:2], dtype=np.float32)
    for piece in pieces:
        x0, y0, x1, y1 = piece.crop.box
        box_size = (x1 - x0, y1 - y0)
        image = _resize_to(piece.image, box_size)
        # linear, not cubic: a cubic kernel would overshoot below 0 and above 1
        weight = piece.weight.astype(np.float32)
        if (weight.shape[1], weight.shape[0]) != box_size:
            weight = cv2.resize(weight, box_size, interpolation=cv2.INTER_LINEAR)
        weight = np.clip(weight, 0.0, 1.0)
        region = out[y0:y1, x0:x1]
        mixed = region * (1.0 - weight[..., None]) + image * weight[..., None]
        blended = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        out[y0:y1, x0:x1] = np.where(weight[..., None] > 0, blended, region)
        np.maximum(weight_map[y0:y1, x0:x1], weight, out=weight_map[y0:y1, x0:x1])
    return PasteResult(image=out, weight=weight_map)


def paste_face(
    template: np.ndarray, image: np.ndarray, crop: FaceCrop, *, weight: np.ndarray
) -> PasteResult:
    """`paste_faces` for one piece."""
    return paste_faces(template, [PastePiece(image=image, crop=crop, weight=weight)])


def seam_mask(weight: np.ndarray, *, width: int = 8) -> np.ndarray:
    """Where pasted faces meet the template: pixels whose paste weight is strictly between 0
    and 1, grown by `width` pixels (uint8 0/255). Inpainting it lightly (the seam pass of a
    multi-person template) blends the pasted regions into each other and the background."""
    band = ((weight > 0) & (weight < 1)).astype(np.uint8) * 255
    return dilate_mask(band, width)
