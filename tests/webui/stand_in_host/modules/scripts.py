"""Stand-in for modules/scripts.py: the img2img script runner, with a script whose UI defaults
must reach p.script_args, and ControlNet's always-on script."""

from types import SimpleNamespace


class _Script:
    def __init__(self, title, args_from, defaults):
        self.title, self.args_from, self.args_to = title, args_from, args_from + len(defaults)
        self.defaults, self.is_img2img = defaults, True

    def ui(self, is_img2img):
        return [SimpleNamespace(value=value) for value in self.defaults]


scripts_img2img = SimpleNamespace(scripts=[
    _Script("Refiner", 1, [False, "", 0.8]),
    _Script("ControlNet", 4, [None, None, None]),
])
