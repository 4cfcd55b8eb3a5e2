"""Stand-in for modules/processing.py. process_images runs the scripts' phases as the hosts do
(process, process_before_every_sampling, postprocess; errors swallowed), then a "sampler" that
paints the masked region green and nudges every other pixel, so tests see what crossed into
the host and that we undo changes outside the mask. Each run is recorded: the settings, the
ControlNet units the script took and applied, the queue lock, the job name and the thread."""

import os
import threading
import time

import numpy as np
from PIL import Image

from modules import call_queue, sd_models, shared

runs = []


class StableDiffusionProcessingImg2Img:
    def __init__(self, sd_model=None, mask=None, **settings):
        self.sd_model, self.image_mask, self.settings = sd_model, mask, settings
        self.init_images = settings["init_images"]
        self.is_api, self.is_api_when_scripts_set, self.closed = False, None, False
        self.extra_generation_params = {}
        self.script_args = []
        self.controlnet_units, self.controlnet_applied = [], []
        self._scripts = None

    @property
    def scripts(self):
        return self._scripts

    @scripts.setter
    def scripts(self, runner):
        self.is_api_when_scripts_set = self.is_api
        self._scripts = runner

    def close(self):
        self.closed = True


def process_images(p):
    reload = getattr(sd_models, "forge_model_reload", None)
    if reload is not None:  # Forge loads the selected checkpoint here, at its first use
        p.sd_model, _ = reload()
    p.scripts.process(p)
    p.scripts.process_before_every_sampling(p)
    _sample(p)
    runs.append({"p": p, "lock_held": call_queue.queue_lock.locked(), "job": shared.state.job,
                 "units": list(p.controlnet_units), "applied": list(p.controlnet_applied),
                 "thread": threading.current_thread().name})
    image = np.asarray(p.init_images[0].convert("RGB")).astype(np.int16)
    image = np.clip(image + 3, 0, 255)
    image[np.asarray(p.image_mask) > 127] = (20, 200, 40)
    processed = type("Processed", (), {"images": [Image.fromarray(image.astype(np.uint8))]})()
    p.scripts.postprocess(p, processed)
    return processed


def _sample(p):
    # a "slow sampler" (STAND_IN_SAMPLER_SECONDS) checks the Interrupt flag as the host's does;
    # STAND_IN_INTERRUPT_AT_STEP is a user pressing the host's Interrupt button at that step
    seconds = float(os.environ.get("STAND_IN_SAMPLER_SECONDS", "0"))
    press_at = int(os.environ.get("STAND_IN_INTERRUPT_AT_STEP", "-1"))
    steps = int(p.settings["steps"] * p.settings["denoising_strength"])
    shared.state.sampling_steps = steps
    for step in range(steps if seconds or press_at >= 0 else 0):
        if step == press_at:
            shared.state.interrupt()
        if shared.state.interrupted:
            break
        shared.state.sampling_step = step
        time.sleep(seconds / steps)
