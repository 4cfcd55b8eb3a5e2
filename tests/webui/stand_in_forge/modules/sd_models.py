"""Stand-in for Forge's modules/sd_models.py: a FakeInitialModel until the first generation,
the selected checkpoint in `model_data.forge_loading_parameters` (set at start-up, as
modules_forge/main_entry.py does), `forge_model_reload` (called by process_images), an
`unload_model_weights` that unloads every model and a `send_model_to_device` stub."""

import os
from types import SimpleNamespace

calls = []  # memory_management.unload_all_models, in order
loads = []  # every checkpoint load


def select_checkpoint():
    filename = os.environ.get("STAND_IN_CHECKPOINT", "")
    if not filename:
        print("You do not have any model!")
        return None
    return SimpleNamespace(filename=filename, title=os.path.basename(filename))


class FakeInitialModel:
    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel()
        self.forge_loading_parameters = {}
        self.forge_hash = ""

    def get_sd_model(self):
        return self.sd_model  # never loads: Forge loads in process_images

    def set_sd_model(self, v):
        self.sd_model = v


model_data = SdModelData()
model_data.forge_loading_parameters = {"checkpoint_info": select_checkpoint()}


def forge_model_reload():
    current = str(model_data.forge_loading_parameters)
    if model_data.forge_hash == current:
        return model_data.sd_model, False
    info = model_data.forge_loading_parameters["checkpoint_info"]
    if info is None:
        raise ValueError("You do not have any model! Please download at least one model in "
                         "[models/Stable-diffusion].")
    loads.append(info.filename)
    model_data.sd_model = SimpleNamespace(sd_checkpoint_info=info, filename=info.filename)
    model_data.forge_hash = current
    return model_data.sd_model, True


def send_model_to_device(m):
    pass  # a stub in Forge


def unload_model_weights(sd_model=None, info=None):
    calls.append("unload_all_models")  # memory_management.unload_all_models()
