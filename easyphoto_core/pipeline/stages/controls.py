"""Stage 4: the ControlNet control images of one face crop.

Each function mirrors the sd-webui-controlnet preprocessor that the matching ControlNet model
was used with, so a control image means the same to the model here as in the WebUI:

- canny: `annotator/canny` = `cv2.Canny(img, low, high)` on the RGB image, defaults 100/200
  (`scripts/processor.py: canny(img, res=512, thr_a=100, thr_b=200)`), as 3 equal channels.
- color: `annotator/color` = a cubic downscale to 1/64 then a nearest-neighbour upscale (64 px
  flat cells of the average colour).
- tile: `tile_resample` = the image itself, or downsampled by a rate (thr_a; < 1.1 = as is);
  we scale it back up so the control has the generation's size.
- openpose: drawn from landmarks (openpose.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from easyphoto_core.faces import BodyPose
from easyphoto_core.pipeline.stages.openpose import (
    OpenPosePerson,
    draw_openpose,
    openpose_person,
)
from easyphoto_core.pipeline.stages.template import LocatedFace

CANNY_LOW_THRESHOLD = 100
CANNY_HIGH_THRESHOLD = 200
COLOR_CELL = 64


@dataclass(frozen=True)
class ControlImages:
    """Control images of one crop, all H x W x 3 uint8 RGB of the crop's size.

    canny: edges of the fused image. openpose: keypoints of the replace image's face (and body).
    color: colour cells of the fused image, or None when colour control is off.
    people: the keypoints drawn on `openpose` (for the intermediate images and the infotext).
    """

    canny: np.ndarray
    openpose: np.ndarray
    color: np.ndarray | None
    people: tuple[OpenPosePerson, ...]


def canny_control(
    image: np.ndarray,
    *,
    low_threshold: int = CANNY_LOW_THRESHOLD,
    high_threshold: int = CANNY_HIGH_THRESHOLD,
) -> np.ndarray:
    """Canny edges of an RGB image as a 3-channel 0/255 image."""
    edges = cv2.Canny(np.ascontiguousarray(image), low_threshold, high_threshold)
    return np.repeat(edges[..., None], 3, axis=2)


def color_control(image: np.ndarray, *, cell: int = COLOR_CELL) -> np.ndarray:
    """The image as flat `cell`-pixel blocks of colour (at least one block per side)."""
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, width // cell), max(1, height // cell)), interpolation=cv2.INTER_CUBIC
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def tile_control(image: np.ndarray, *, rate: float = 1.0) -> np.ndarray:
    """The tile model's input: the image itself, or (rate >= 1.1) downsampled by `rate` with
    area averaging and brought back to its size, which leaves the model room to add detail."""
    if rate < 1.1:
        return image.copy()
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, int(width / rate)), max(1, int(height / rate))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def openpose_control(
    faces: Sequence[LocatedFace], size: tuple[int, int], *, body: BodyPose | None = None
) -> tuple[np.ndarray, tuple[OpenPosePerson, ...]]:
    """The OpenPose image of `faces` (each with the body pose if it is theirs) for an image of
    `size` = (width, height), and the keypoints drawn."""
    people = tuple(openpose_person(face, body=body) for face in faces)
    return draw_openpose(people, size), people


def control_images(
    fused_image: np.ndarray,
    replace_face: LocatedFace,
    *,
    body: BodyPose | None = None,
    with_color: bool = False,
    low_threshold: int = CANNY_LOW_THRESHOLD,
    high_threshold: int = CANNY_HIGH_THRESHOLD,
) -> ControlImages:
    """The first diffusion's controls: canny and (optionally) colour of the fused image, and
    the OpenPose drawing of the replace image's face (`FusionResult.source_face` of
    `replace_face`) with `body` = the pose estimator's result on the replace image, if any."""
    height, width = fused_image.shape[:2]
    openpose, people = openpose_control([replace_face], (width, height), body=body)
    return ControlImages(
        canny=canny_control(
            fused_image, low_threshold=low_threshold, high_threshold=high_threshold
        ),
        openpose=openpose,
        color=color_control(fused_image) if with_color else None,
        people=people,
    )
