"""Stand-in for modules/scripts.py: Script, the img2img ScriptRunner with a script whose UI
defaults must reach p.script_args, and the always-on scripts the active extensions bring
(ControlNet's). As in both hosts, an exception in a script is reported and swallowed."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

from modules import errors, extensions

AlwaysVisible = object()


class Script:
    filename = ""
    args_from = args_to = 0
    is_img2img = True

    def title(self):
        return type(self).__name__

    def show(self, is_img2img):
        return AlwaysVisible

    def ui(self, is_img2img):
        return []


class Refiner(Script):
    def title(self):
        return "Refiner"

    def ui(self, is_img2img):
        return [SimpleNamespace(value=value) for value in (False, "", 0.8)]


class ScriptRunner:
    def __init__(self, scripts):
        self.scripts, self.alwayson_scripts = scripts, list(scripts)
        position = 1
        for script in scripts:
            script.args_from = position
            script.args_to = position = position + len(script.ui(True))

    def _each(self, method, p, *extra, **kwargs):
        for script in self.alwayson_scripts:
            if not hasattr(script, method):
                continue
            try:
                args = p.script_args[script.args_from:script.args_to]
                getattr(script, method)(p, *extra, *args, **kwargs)
            except Exception:
                errors.report(f"Error running {method}: {script.filename}", exc_info=True)

    def process(self, p):
        self._each("process", p)

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, **kwargs)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)


def _extension_scripts():
    """Each active extension's scripts/controlnet.py, loaded the way the hosts load scripts."""
    found = []
    for extension in extensions.active():
        path = Path(extension.path) / "scripts" / "controlnet.py"
        if not path.is_file():
            continue
        if extension.path not in sys.path:  # Forge keeps every extension folder on sys.path
            sys.path.insert(0, extension.path)
        spec = importlib.util.spec_from_file_location("controlnet.py", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Script) and value is not Script:
                script = value()
                script.filename = str(path)
                found.append(script)
    return found


def __getattr__(name):
    # built on first use, as the hosts build it at start-up after loading every script
    if name == "scripts_img2img":
        runner = ScriptRunner([Refiner(), *_extension_scripts()])
        globals()["scripts_img2img"] = runner
        return runner
    raise AttributeError(name)
