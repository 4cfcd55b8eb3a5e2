"""Stand-in for sd-webui-controlnet's scripts/controlnet.py: the always-on "ControlNet" script.
In `process` it takes the enabled units from its script_args, writes them into the infotext as
"ControlNet <i>", loads each unit's model and hooks it into the UNet (recorded on p). A model
named in STAND_IN_CONTROLNET_BROKEN fails to load, as a corrupt file does."""

import os
from types import SimpleNamespace

from modules import scripts, shared

external_code = __import__("importlib").import_module(
    "extensions.sd-webui-controlnet.scripts.external_code")


class Script(scripts.Script):
    def title(self):
        return "ControlNet"

    def ui(self, is_img2img):
        count = shared.opts.data.get("control_net_unit_count", 3)
        return [SimpleNamespace(value=external_code.ControlNetUnit(enabled=False))] * count

    def process(self, p, *args):
        units = [unit for unit in args if unit.enabled]
        p.controlnet_units = units
        p.extra_generation_params.update(
            {f"ControlNet {i}": f"Module: {u.module}, Model: {u.model}" for i, u in enumerate(units)})
        for unit in units:
            if unit.model not in external_code.get_models():
                raise RuntimeError(f"model not found: {unit.model}")
            if unit.model.split(" [")[0] == os.environ.get("STAND_IN_CONTROLNET_BROKEN"):
                raise RuntimeError(f"Error(s) in loading state_dict for ControlNet {unit.model}")
        p.controlnet_applied = [unit.model for unit in units]  # hooked into the UNet
