"""Stand-in for sd-webui-controlnet's scripts/external_code.py (API version 3): the unit model,
the model list ("stem [hash]", or STAND_IN_CONTROLNET_MODELS) and the processing update."""

import os

MODULES = {"none", "canny", "openpose_full", "tile_resample"}
MODELS = ("control_v11p_sd15_canny [d14c016b]", "control_v11p_sd15_openpose [cab727d4]",
          "control_v11f1e_sd15_tile_fp16 [3b860298]")


def get_api_version():
    return 3


def get_models(update=False):
    listed = os.environ.get("STAND_IN_CONTROLNET_MODELS")
    return ["None", *(listed.split(",") if listed is not None else MODELS)]


class ControlNetUnit:
    def __init__(self, enabled=True, module="none", model="None", weight=1.0, image=None,
                 resize_mode="Crop and Resize", control_mode="Balanced", pixel_perfect=False):
        if module not in MODULES:
            raise ValueError(f"unknown ControlNet module {module}")
        self.enabled, self.module, self.model, self.weight = enabled, module, model, weight
        self.image, self.resize_mode, self.control_mode = image, resize_mode, control_mode
        self.pixel_perfect = pixel_perfect


def update_cn_script_in_processing(p, units):
    if p.script_args is None:
        raise RuntimeError("script_args must be filled before ControlNet units are added")
    p.controlnet_units = list(units)
