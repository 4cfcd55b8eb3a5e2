"""Stand-in for Forge's lib_controlnet/global_state.py: the model list ("stem [hash]", or
STAND_IN_CONTROLNET_MODELS), read again by update_controlnet_filenames, and the supported
preprocessors ("None" needs no model and has sliders; other names are unknown here)."""

import os
from types import SimpleNamespace

MODELS = ("control_v11p_sd15_canny [d14c016b]", "control_v11p_sd15_openpose [cab727d4]",
          "control_v11f1e_sd15_tile_fp16 [3b860298]")
controlnet_filename_dict = {"None": "model.safetensors"}
controlnet_names = ["None"]
refreshes = []

_slider = SimpleNamespace(gradio_update_kwargs={"value": 512})
supported_preprocessors = {
    "None": SimpleNamespace(name="None", slider_resolution=_slider, slider_1=_slider,
                            slider_2=_slider, do_not_need_model=False),
}


def get_preprocessor(name):
    return supported_preprocessors.get(name)


def get_all_controlnet_names():
    return controlnet_names


def get_controlnet_filename(controlnet_name):
    return controlnet_filename_dict[controlnet_name]


def update_controlnet_filenames():
    global controlnet_filename_dict, controlnet_names
    refreshes.append(True)
    listed = os.environ.get("STAND_IN_CONTROLNET_MODELS")
    names = listed.split(",") if listed is not None else MODELS
    controlnet_filename_dict = {"None": "model.safetensors"}
    controlnet_filename_dict.update({n: f"models/ControlNet/{n.split(' [')[0]}.safetensors"
                                     for n in names if n})
    controlnet_names = list(controlnet_filename_dict)
