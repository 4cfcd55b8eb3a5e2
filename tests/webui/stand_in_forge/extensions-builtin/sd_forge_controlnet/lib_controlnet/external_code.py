"""Stand-in for Forge's lib_controlnet/external_code.py (API version 2): the unit is a
dataclass (unknown fields are a TypeError), "None" is the no-preprocessor module, and there is
neither get_models nor update_cn_script_in_processing."""

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np


def get_api_version() -> int:
    return 2


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class ResizeMode(Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"


@dataclass
class ControlNetUnit:
    use_preview_as_input: bool = False
    generated_image: np.ndarray | None = None
    mask_image: Any | None = None
    mask_image_fg: Any | None = None
    hr_option: Any = "Both"
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Any | None = None
    image_fg: Any | None = None
    resize_mode: Any = ResizeMode.INNER_FIT
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: Any = ControlMode.BALANCED
    save_detected_map: bool = True
