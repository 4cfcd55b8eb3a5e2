"""Stand-in for modules/sd_models.py: records the VRAM hand-over around training."""

calls = []


def unload_model_weights(sd_model=None, info=None):
    calls.append("unload_model_weights")


def send_model_to_device(model):
    calls.append("send_model_to_device")
