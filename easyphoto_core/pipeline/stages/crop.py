"""Stage 2: the region around one template face, cropped and resized for the diffusion.

The crop box is the face box enlarged x`crop_ratio` about its centre and clamped to the image,
rounded out to whole pixels. It is resized so that its short side is `short_side` and both
sides are multiples of 8 (the VAE's factor), which may stretch one axis by at most 4 pixels'
worth; `FaceCrop.matrix` records the exact mapping, and pasting back resizes to the box again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from easyphoto_core.faces import expand_box
from easyphoto_core.pipeline.stages.template import LocatedFace

LATENT_FACTOR = 8


@dataclass(frozen=True)
class FaceCrop:
    """A face's neighbourhood, ready for the diffusion.

    image: H x W x 3 uint8, H and W multiples of 8, min(H, W) = the requested short side.
    box: (x0, y0, x1, y1) integer crop box in template pixels (x1, y1 exclusive).
    matrix: 2x3 float64, template pixel coordinates -> crop pixel coordinates.
    face: the face in crop coordinates.
    """

    image: np.ndarray
    box: tuple[int, int, int, int]
    matrix: np.ndarray
    face: LocatedFace

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the resized crop."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def box_size(self) -> tuple[int, int]:
        """(width, height) of the crop box in the template."""
        return self.box[2] - self.box[0], self.box[3] - self.box[1]

    @property
    def inverse_matrix(self) -> np.ndarray:
        """2x3 float64, crop pixel coordinates -> template pixel coordinates."""
        return cv2.invertAffineTransform(self.matrix)


def crop_output_size(box_width: int, box_height: int, short_side: int) -> tuple[int, int]:
    """(width, height) of a resized crop: short side = `short_side` (itself rounded to a
    multiple of 8), long side scaled alike and rounded to the nearest multiple of 8."""
    if box_width <= 0 or box_height <= 0:
        raise ValueError(f"empty crop box ({box_width} x {box_height})")
    short = max(LATENT_FACTOR, round(short_side / LATENT_FACTOR) * LATENT_FACTOR)
    long_exact = short * max(box_width, box_height) / min(box_width, box_height)
    long = max(short, round(long_exact / LATENT_FACTOR) * LATENT_FACTOR)
    return (short, long) if box_width <= box_height else (long, short)


def crop_box_for(
    face_box: np.ndarray, image_size: tuple[int, int], crop_ratio: float
) -> tuple[int, int, int, int]:
    """Integer crop box: the face box x`crop_ratio`, clamped to `image_size` = (width, height),
    rounded outwards so the enlarged box is whole."""
    width, height = image_size
    x0, y0, x1, y1 = expand_box(face_box, crop_ratio, image_size)
    box = (
        max(0, math.floor(x0)), max(0, math.floor(y0)),
        min(width, math.ceil(x1)), min(height, math.ceil(y1)),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"face box {np.round(face_box, 1).tolist()} lies outside the image")
    return box


def scale_matrix(box: tuple[int, int, int, int], output_size: tuple[int, int]) -> np.ndarray:
    """2x3 matrix mapping image points into `box` resized to `output_size` = (width, height).

    cv2.resize maps pixel centres onto pixel centres, so the scale applies to (x + 0.5) and the
    0.5 comes back off; this keeps landmarks on the pixels they marked.
    """
    scale_x = output_size[0] / (box[2] - box[0])
    scale_y = output_size[1] / (box[3] - box[1])
    return np.array(
        [[scale_x, 0.0, (0.5 - box[0]) * scale_x - 0.5],
         [0.0, scale_y, (0.5 - box[1]) * scale_y - 0.5]],
        dtype=np.float64,
    )


def crop_face(
    template: np.ndarray,
    face: LocatedFace,
    *,
    crop_ratio: float = 3.0,
    short_side: int = 512,
) -> FaceCrop:
    """Crop `face`'s neighbourhood from `template` and resize it (see the module docstring).

    `short_side` is GenerateParams.first_diffusion_resolution; `crop_ratio` is EasyPhoto's x3.
    """
    if crop_ratio < 1.0:
        raise ValueError(f"crop_ratio must be >= 1, got {crop_ratio}")
    height, width = template.shape[:2]
    box = crop_box_for(face.box, (width, height), crop_ratio)
    size = crop_output_size(box[2] - box[0], box[3] - box[1], short_side)
    region = template[box[1]:box[3], box[0]:box[2]]
    shrinking = size[0] < region.shape[1]
    # INTER_AREA when shrinking (no aliasing), cubic when enlarging (sharper than linear)
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    image = cv2.resize(np.ascontiguousarray(region), size, interpolation=interpolation)
    matrix = scale_matrix(box, size)
    return FaceCrop(image=image, box=box, matrix=matrix, face=face.transformed(matrix))
