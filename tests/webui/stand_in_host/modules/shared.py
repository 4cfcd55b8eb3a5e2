"""Stand-in for modules/shared.py: cmd_opts, opts with add_option, OptionInfo, the job state,
and `sd_model` as the lazy property both hosts have (reading it may load the checkpoint)."""

import os
import sys
from types import ModuleType, SimpleNamespace

cmd_opts = SimpleNamespace(
    lora_dir=os.environ.get("STAND_IN_LORA_DIR") or None,
    controlnet_dir=None,
    api_auth=os.environ.get("STAND_IN_API_AUTH") or None,
    gradio_auth=os.environ.get("STAND_IN_GRADIO_AUTH") or None,
    gradio_auth_path=os.environ.get("STAND_IN_GRADIO_AUTH_PATH") or None,
)


class OptionInfo:
    """modules/options.py at 82a973c0: a section is (id, label); the settings page groups
    sections under the heading of `category_id` ("Uncategorized" when it is None)."""

    def __init__(self, default=None, label="", component=None, component_args=None,
                 onchange=None, section=None, refresh=None, comment_before="", comment_after="",
                 infotext=None, restrict_api=False, category_id=None):
        self.default, self.label, self.section = default, label, section
        self.component, self.component_args = component, component_args
        self.category_id = category_id


CATEGORIES = {"saving", "sd", "ui", "system", "postprocessing", "training"}  # shared_options.py


class Options:
    def __init__(self):
        object.__setattr__(self, "data_labels", {})
        object.__setattr__(self, "data", {"outdir_samples": "", "control_net_unit_count": 3})

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
        self.sampling_step, self.sampling_steps, self.job_count = 0, 0, 0
        self.textinfo, self.textinfos = None, []

    def begin(self, job="(unknown)"):
        self.interrupted, self.job, self.job_count = False, job, -1
        self.sampling_step, self.sampling_steps, self.textinfo = 0, 0, None
        self.jobs_begun.append(job)

    def end(self):
        self.job, self.job_count = "", 0

    def interrupt(self):
        self.interrupted = True

    def __setattr__(self, name, value):
        if name == "textinfo" and value:
            self.textinfos.append(value)  # what the host's progress showed, for the tests
        object.__setattr__(self, name, value)


state = State()


class Shared(ModuleType):
    """As in the hosts' modules/shared_items.py: `shared.sd_model` is a property over
    sd_models.model_data.get_sd_model(), which loads the checkpoint in A1111."""

    @property
    def sd_model(self):
        from modules import sd_models

        return sd_models.model_data.get_sd_model()


sys.modules[__name__].__class__ = Shared
