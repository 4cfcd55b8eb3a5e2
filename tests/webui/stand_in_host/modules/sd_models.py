"""Stand-in for AUTOMATIC1111's modules/sd_models.py: the selected checkpoint
(STAND_IN_CHECKPOINT), a lazily loaded model, and the VRAM hand-over, all recorded."""

import os
from types import SimpleNamespace

calls = []  # unload_model_weights / send_model_to_device, in order
loads = []  # every checkpoint load


def select_checkpoint():
    filename = os.environ.get("STAND_IN_CHECKPOINT", "")
    if not filename:
        raise FileNotFoundError("No checkpoints found. Can't run without a checkpoint.")
    return SimpleNamespace(filename=filename, title=os.path.basename(filename))


class SdModelData:
    def __init__(self):
        self.sd_model = None

    def get_sd_model(self):
        if self.sd_model is None:
            try:
                load_model()
            except Exception as error:  # as A1111: printed, and the model stays None
                print(f"Stable diffusion model failed to load: {error}")
        return self.sd_model


model_data = SdModelData()


def load_model(checkpoint_info=None):
    info = checkpoint_info or select_checkpoint()
    loads.append(info.filename)
    model_data.sd_model = SimpleNamespace(sd_checkpoint_info=info, lowvram=False, device="gpu")


def send_model_to_cpu(m):
    m.device = "cpu"


def unload_model_weights(sd_model=None, info=None):
    from modules import shared

    calls.append("unload_model_weights")
    send_model_to_cpu(sd_model or shared.sd_model)  # as A1111: this loads a missing model
    return sd_model


def send_model_to_device(m):
    calls.append("send_model_to_device")
    m.device = "gpu"
