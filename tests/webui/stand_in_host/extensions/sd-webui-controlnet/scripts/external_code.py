"""Stand-in for sd-webui-controlnet's scripts/external_code.py (API version 3): the unit model,
the model list ("stem [hash]", or STAND_IN_CONTROLNET_MODELS) and the processing update, which
writes the units into the ControlNet script's slots of p.script_args."""

import os

MODULES = {"none", "canny", "openpose_full", "tile_resample"}
MODELS = ("control_v11p_sd15_canny [d14c016b]", "control_v11p_sd15_openpose [cab727d4]",
          "control_v11f1e_sd15_tile_fp16 [3b860298]")
refreshes = []


def get_api_version():
    return 3


def get_models(update=False):
    if update:
        refreshes.append(True)
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


def find_cn_script(script_runner):
    for script in getattr(script_runner, "alwayson_scripts", []):
        if script.title().lower() == "controlnet":
            return script
    return None


def update_cn_script_in_processing(p, cn_units, **_kwargs):
    script = find_cn_script(p.scripts)
    if script is None or len(p.script_args) < script.args_from:
        return  # as the real one: nothing to update
    args = list(p.script_args)
    slots = script.args_to - script.args_from
    padding = [ControlNetUnit(enabled=False)] * max(0, slots - len(cn_units))
    args[script.args_from:script.args_to] = [*cn_units, *padding]
    p.script_args = args
