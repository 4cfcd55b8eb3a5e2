"""Stand-in for Forge's scripts/controlnet.py: ControlNetForForgeOfficial, the always-on
"ControlNet" script. `process` takes the enabled units from its script_args (dataclass units
only), writes the infotext, checks each unit's parameters against its preprocessor (an unknown
module fails there, as "none" does in Forge), reads its image (a nearly black image without a
foreground layer fails, as in Forge) and loads its model (STAND_IN_CONTROLNET_BROKEN names one
that fails, as a corrupt file does); `process_before_every_sampling` patches each prepared unit
into the UNet (recorded on p), by index."""

import os

import numpy as np
from lib_controlnet import global_state
from lib_controlnet.external_code import ControlNetUnit
from modules import scripts, shared

global_state.update_controlnet_filenames()


class _Slot:
    def __init__(self, value):
        self.value = value


class ControlNetForForgeOfficial(scripts.Script):
    def __init__(self):
        self.current_params = {}

    def title(self):
        return "ControlNet"

    def ui(self, is_img2img):
        count = shared.opts.data.get("control_net_unit_count", 3)
        return [_Slot(ControlNetUnit(enabled=False, module="None", model="None"))
                for _ in range(count)]

    def get_enabled_units(self, units):
        assert all(isinstance(unit, ControlNetUnit) for unit in units)
        return [unit for unit in units if unit.enabled]

    def process(self, p, *args, **kwargs):
        self.current_params = {}
        enabled_units = self.get_enabled_units(args)
        p.controlnet_units = enabled_units
        p.extra_generation_params.update(
            {f"ControlNet {i}": f"Module: {u.module}, Model: {u.model}"
             for i, u in enumerate(enabled_units)})
        for i, unit in enumerate(enabled_units):
            preprocessor = global_state.get_preprocessor(unit.module)
            if unit.processor_res < 0:
                unit.processor_res = int(
                    preprocessor.slider_resolution.gradio_update_kwargs.get("value", 512))
            image = self._input_image(unit)
            filename = global_state.get_controlnet_filename(unit.model)
            if unit.model.split(" [")[0] == os.environ.get("STAND_IN_CONTROLNET_BROKEN"):
                raise RuntimeError(f"Recognizing Control Model failed: {filename}")
            self.current_params[i] = (unit.model, image)

    @staticmethod
    def _input_image(unit):
        unit_image = unit.image
        unit_image_fg = unit.image_fg[:, :, 3] if unit.image_fg is not None else None
        if (unit_image < 5).all() and (unit_image_fg > 5).any():
            return unit_image_fg
        return np.asarray(unit_image)

    def process_before_every_sampling(self, p, *args, **kwargs):
        for i, _unit in enumerate(self.get_enabled_units(args)):
            model, _image = self.current_params[i]
            p.controlnet_applied.append(model)

    def postprocess(self, p, processed, *args):
        self.current_params = {}
