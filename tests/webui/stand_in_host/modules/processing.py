"""Stand-in for modules/processing.py. Its "sampler" paints the masked region green and nudges
every other pixel, so tests see what crossed into the host and that we undo changes outside the
mask. It records each run: the settings, the script state and whether the queue lock was held."""

import os
import time

import numpy as np
from PIL import Image

from modules import call_queue, shared

runs = []


class StableDiffusionProcessingImg2Img:
    def __init__(self, sd_model=None, mask=None, **settings):
        self.sd_model, self.image_mask, self.settings = sd_model, mask, settings
        self.init_images = settings["init_images"]
        self.is_api, self.is_api_when_scripts_set, self.closed = False, None, False
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
    # a "slow sampler" (STAND_IN_SAMPLER_SECONDS) checks the Interrupt flag as the host's does
    seconds = float(os.environ.get("STAND_IN_SAMPLER_SECONDS", "0"))
    steps = int(p.settings["steps"] * p.settings["denoising_strength"])
    shared.state.sampling_steps = steps
    for step in range(steps if seconds else 0):
        if shared.state.interrupted:
            break
        shared.state.sampling_step = step
        time.sleep(seconds / steps)
    runs.append({"p": p, "lock_held": call_queue.queue_lock.locked(), "job": shared.state.job,
                 "units": list(getattr(p, "controlnet_units", []))})
    image = np.asarray(p.init_images[0].convert("RGB")).astype(np.int16)
    image = np.clip(image + 3, 0, 255)
    image[np.asarray(p.image_mask) > 127] = (20, 200, 40)
    return type("Processed", (), {"images": [Image.fromarray(image.astype(np.uint8))]})()
