"""Does this Python environment import everything EasyPhoto runs? One list, checked for real.

install.py runs `python -m easyphoto_core.environment --json` in the host's Python after it has
installed anything (a subprocess, so a broken import cannot take the installer down), and the
trainer subprocess can run `check_environment()` before it loads a model. Each check imports the
module *and* reads the names we use from it: diffusers and transformers import lazily, so
`import diffusers` succeeds on a host where `diffusers.AutoencoderKL` then fails (seen on
A1111 1.10.1: diffusers 0.37.1 under transformers 4.30.2, "cannot import name
'Dinov2WithRegistersConfig' from 'transformers'").
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ImportCheck:
    distribution: str  # what pip installs, named in the message
    module: str
    names: tuple[str, ...] = ()
    needed_for: str = ""
    call: str | None = None  # a function of the module to call with no arguments


# What the extension (tab, routes), the trainer subprocess and the generation path import.
CHECKS: tuple[ImportCheck, ...] = (
    ImportCheck("torch", "torch", ("nn", "optim"), "training and generation"),
    ImportCheck("safetensors", "safetensors.torch", ("load_file", "save_file"), "LoRA files"),
    ImportCheck("transformers", "transformers", ("CLIPTextModel", "CLIPTextConfig",
                                                 "CLIPTokenizer"), "the text encoder"),
    ImportCheck("diffusers", "diffusers", ("AutoencoderKL", "UNet2DConditionModel",
                                           "ControlNetModel", "DDPMScheduler",
                                           "DPMSolverMultistepScheduler"),
                "training and the standalone generation"),
    ImportCheck("opencv-python-headless", "cv2", ("FaceDetectorYN", "seamlessClone"),
                "face detection and blending"),
    ImportCheck("dlib-bin", "dlib", ("get_frontal_face_detector",), "face landmarks"),
    # Found by its import spec, never imported: its __init__ needs pkg_resources (setuptools < 81).
    ImportCheck("face-recognition-models", "easyphoto_core.faces.dlib_backend", (),
                "the identity embedding", call="dlib_models_dir"),
    ImportCheck("pydantic", "pydantic", ("BaseModel",), "parameters"),
    ImportCheck("sd-webui-easyphoto", "easyphoto_train.run", ("run_training",), "the trainer"),
    ImportCheck("sd-webui-easyphoto", "easyphoto_core.pipeline.portrait", (), "generation"),
)
# Only where a UI is served (the WebUI, app.py); the trainer and the CLI do without them.
UI_CHECKS: tuple[ImportCheck, ...] = (
    ImportCheck("gradio", "gradio", ("Blocks",), "the EasyPhoto tab"),
    ImportCheck("fastapi", "fastapi", ("APIRouter",), "the HTTP routes"),
    ImportCheck("sd-webui-easyphoto", "easyphoto_app.ui", ("build_ui",), "the EasyPhoto tab"),
    ImportCheck("sd-webui-easyphoto", "easyphoto_app.api", ("register_routes",), "the routes"),
)


@dataclass(frozen=True)
class ImportFailure:
    distribution: str
    version: str | None  # installed version, None when the distribution is absent
    module: str
    error: str  # the cause, e.g. "cannot import name 'X' from 'y'"
    needed_for: str

    def describe(self) -> str:
        installed = f"{self.distribution} {self.version}" if self.version else self.distribution
        return (f"{installed} does not import ({self.module}: {self.error}); "
                f"EasyPhoto needs it for {self.needed_for}.")


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_check(check: ImportCheck) -> ImportFailure | None:
    try:
        module = importlib.import_module(check.module)
        for name in check.names:
            getattr(module, name)
        if check.call:
            getattr(module, check.call)()
    except Exception as error:  # any import-time error is what we report, not a crash
        return ImportFailure(check.distribution, installed_version(check.distribution),
                             check.module, _cause(error), check.needed_for)
    return None


def _cause(error: BaseException) -> str:
    """The line that says why: diffusers wraps the real error ("cannot import name ...") after
    a first line that only says "look up to see its traceback"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def check_environment(*, with_ui: bool = False) -> list[ImportFailure]:
    checks = CHECKS + (UI_CHECKS if with_ui else ())
    return [failure for check in checks if (failure := run_check(check)) is not None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m easyphoto_core.environment",
                                     description="Check that everything EasyPhoto runs imports.")
    parser.add_argument("--ui", action="store_true", help="also check the tab and the routes")
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout")
    args = parser.parse_args(argv)
    failures = check_environment(with_ui=args.ui)
    if args.json:
        print(json.dumps([asdict(failure) for failure in failures]))
    else:
        for failure in failures:
            print(failure.describe())
        print("EasyPhoto: every import works." if not failures else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
