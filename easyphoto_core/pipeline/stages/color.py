"""Stage 6 (and fusion's colour match): move an image's colours toward a reference in LAB.

Reinhard et al. 2001, "Color transfer between images": per LAB channel, shift and scale the
values inside a mask so that their mean and standard deviation become the reference's. LAB
separates lightness from colour, so a face generated too pale or too red is corrected without
flattening its shading. Work is done in float32 LAB (L 0..100) and only inside the mask's
bounding box; pixels with zero weight keep their exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LabStats:
    """Mean and standard deviation per LAB channel (L 0..100, a and b about -127..127)."""

    mean: np.ndarray
    std: np.ndarray


def to_lab(image: np.ndarray) -> np.ndarray:
    """RGB uint8 -> float32 LAB (OpenCV's float convention: L 0..100)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """float32 LAB -> RGB float32 0..255 (not rounded: the caller blends first)."""
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0


def lab_stats(image: np.ndarray, mask: np.ndarray) -> LabStats:
    """LAB statistics of `image`'s pixels where `mask` > 0 (ValueError on an empty mask)."""
    selected = mask > 0
    if not selected.any():
        raise ValueError("empty mask: no pixels to measure colour on")
    ys, xs = np.nonzero(selected)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    lab = to_lab(np.ascontiguousarray(image[y0:y1, x0:x1]))[selected[y0:y1, x0:x1]]
    return LabStats(mean=lab.mean(axis=0), std=lab.std(axis=0))


def color_shift(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    mask: np.ndarray,
    reference_mask: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    strength: float = 1.0,
    max_gain: float = 2.0,
) -> np.ndarray:
    """`image` with the colours inside `mask` moved toward `reference`'s inside `reference_mask`.

    mask: where `image`'s statistics are measured (uint8, > 0 = in).
    reference_mask: where `reference`'s are measured (default: `mask`; the reference may have a
        different size then).
    weight: float32 H x W in [0, 1], how much of the shifted colour each pixel takes (default:
        the mask itself, hard-edged); pixels with weight 0 are returned unchanged, bit for bit.
    strength: 0 = no change, 1 = statistics matched fully.
    max_gain: bound on the std ratio, so a flat region (a shadowed cheek) is not blown up.
    """
    reference_mask = mask if reference_mask is None else reference_mask
    source_stats = lab_stats(image, mask)
    target_stats = lab_stats(reference, reference_mask)
    if weight is None:
        weight = (mask > 0).astype(np.float32)
    weight = np.clip(weight.astype(np.float32) * strength, 0.0, 1.0)
    active = weight > 0
    out = image.copy()
    if not active.any():
        return out
    gain = np.clip(
        target_stats.std / np.maximum(source_stats.std, 1e-3), 1.0 / max_gain, max_gain
    ).astype(np.float32)
    ys, xs = np.nonzero(active)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    lab = to_lab(region)
    shifted_lab = (lab - source_stats.mean.astype(np.float32)) * gain + target_stats.mean.astype(
        np.float32
    )
    shifted = from_lab(shifted_lab.astype(np.float32))
    local_weight = weight[y0:y1, x0:x1, None]
    blended = region.astype(np.float32) * (1.0 - local_weight) + shifted * local_weight
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # only weighted pixels change: the rest of the box keeps its exact values
    out[y0:y1, x0:x1] = np.where(active[y0:y1, x0:x1, None], blended, region)
    return out
