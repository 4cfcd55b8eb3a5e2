"""Stand-in for modules/shared.py: cmd_opts, opts with add_option, OptionInfo."""

import os
from types import SimpleNamespace

cmd_opts = SimpleNamespace(
    lora_dir=os.environ.get("STAND_IN_LORA_DIR") or None,
    controlnet_dir=None,
    api_auth=os.environ.get("STAND_IN_API_AUTH") or None,
)


# the loaded checkpoint (A1111: shared.sd_model.sd_checkpoint_info.filename)
sd_model = SimpleNamespace(
    sd_checkpoint_info=SimpleNamespace(filename=os.environ.get("STAND_IN_CHECKPOINT", ""))
)


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, section=None):
        self.default, self.label, self.section = default, label, section


class Options:
    def __init__(self):
        object.__setattr__(self, "data_labels", {})
        object.__setattr__(self, "data", {"outdir_samples": ""})

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def __getattr__(self, item):
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(item) from None


opts = Options()


class State:
    """Stand-in for modules/shared_state.State: job bookkeeping and the Interrupt button."""

    def __init__(self):
        self.interrupted, self.job, self.jobs_begun = False, "", []
        self.sampling_step, self.sampling_steps = 0, 0

    def begin(self, job="(unknown)"):
        self.interrupted, self.job = False, job
        self.sampling_step, self.sampling_steps = 0, 0
        self.jobs_begun.append(job)

    def end(self):
        self.job = ""

    def interrupt(self):
        self.interrupted = True


state = State()
