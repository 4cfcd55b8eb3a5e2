"""`python -m easyphoto_core COMMAND ...`: the command-line interface of the core.

Each command is a small function taking the parsed arguments; heavy imports (torch, diffusers,
face models) happen inside the command so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from easyphoto_core.weights import WeightsError


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message already says what is wrong and what to do: no traceback."""
    from easyphoto_core.faces.base import FaceModelError
    from easyphoto_core.preprocess import PreprocessError
    from easyphoto_core.trainer_process.runner import TrainingFailed

    return (ValueError, OSError, WeightsError, PreprocessError, TrainingFailed, FaceModelError)

Command = Callable[[argparse.Namespace], int]


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from easyphoto_core.sd.tiny import write_tiny_models

    files = write_tiny_models(Path(args.out_dir), seed=args.seed, size=args.size)
    print(f"Wrote {args.size} random-weight models (they make noise, not portraits):")
    for path in (files.checkpoint, *files.controlnets.values()):
        print(f"  {path}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    import dataclasses

    from easyphoto_core import weights

    paths = weights.WeightPaths.standalone(root=args.weights_dir)
    overrides = {"controlnet": args.controlnet_dir, "lora": args.lora_dir,
                 "checkpoint": args.checkpoint_dir}
    paths = dataclasses.replace(paths, **{k: Path(v) for k, v in overrides.items() if v})
    if args.list or not args.names:
        print(weights.format_listing(paths))
        return 0
    for name in args.names:
        path = weights.ensure(name, paths)
        print(f"{name}: {path}")
    return 0


def _face_models(args: argparse.Namespace):
    from easyphoto_core.faces.chooser import FaceModels
    from easyphoto_core.weights import WeightPaths

    return FaceModels.load(WeightPaths.standalone(root=args.weights_dir))


def _preprocess(args: argparse.Namespace, params):
    from easyphoto_core.preprocess import preprocess_photos
    from easyphoto_core.workspace import Workspace, default_workspace_root

    user = Workspace(args.workspace or default_workspace_root()).user(args.user_id)
    with _face_models(args) as models:
        report = preprocess_photos([Path(p) for p in args.photos], user, params, models)
    print(report.summary())
    print(f"dataset: {user.dataset_dir}  report: {user.preprocess_report}")
    return user, report


def cmd_preprocess(args: argparse.Namespace) -> int:
    from easyphoto_core.params import TrainParams, parse_params

    _preprocess(args, parse_params(TrainParams))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Preprocess + train beside the user's current files; swapped in only when it succeeds
    (the same transactional path as the studio's jobs). --resume continues a CLI training that
    was stopped (Ctrl-C, a crash) from its last checkpoint."""
    from easyphoto_core.jobs import JobCancelled
    from easyphoto_core.params import TrainParams, parse_params
    from easyphoto_core.studio import train_user
    from easyphoto_core.workspace import Workspace, default_workspace_root

    overrides = parse_param_overrides(args.param, TrainParams)
    if args.max_train_steps:
        overrides["max_train_steps"] = args.max_train_steps
    params = parse_params(TrainParams, overrides)
    workspace = Workspace(args.workspace or default_workspace_root())
    user = workspace.new_user(args.user_id)
    stage = user.staging(CLI_STAGING)
    with _face_models(args) as models, _progress_bar() as on_event:
        try:
            result = train_user(
                workspace, user, [Path(p) for p in args.photos], params,
                base_model=Path(args.base_model), face_models=lambda: models,
                device=args.device, lora_copy_dirs=[Path(d) for d in args.lora_dir],
                weights_dir=Path(args.weights_dir) if args.weights_dir else None,
                job_id=CLI_STAGING, work_dir=stage.jobs_dir, handle=_CliHandle(),
                resume=args.resume, on_event=on_event)
        except JobCancelled as stop:
            print(f"stopped: {stop} (python -m easyphoto_core train --resume ... continues)",
                  file=sys.stderr)
            return 3
    print(result["preprocess"])
    print(f"LoRA: {result['lora']}")
    for copy in result["lora_copies"]:
        print(f"  copied to {copy}")
    return 0


CLI_STAGING = "cli"  # the CLI's training folder beside the user's files: <user>/.train-cli/


class _CliHandle:
    """What train_user needs of a job, for a run in this terminal (Ctrl-C reaches the trainer
    directly: it shares our process group)."""

    def __init__(self) -> None:
        self.record = type("Record", (), {"progress": {}})()
        self.cancelled = False

    def report(self, **progress: object) -> None:
        self.record.progress.update(progress)

    def check_cancelled(self) -> None:
        return None

    def on_cancel(self, action: object) -> None:
        return None


@contextlib.contextmanager
def _progress_bar():
    from tqdm import tqdm

    bar = tqdm(total=0, unit="step", desc="training", dynamic_ncols=True)

    def on_event(event: dict) -> None:
        if event["event"] == "start":
            bar.reset(total=event["total_steps"])
            bar.update(event["start_step"])
        elif event["event"] == "step":
            bar.update(event["step"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.4f}")
        elif event["event"] in ("checkpoint", "validation", "error", "cancelled"):
            bar.write(f"{event['event']}: " + ", ".join(
                f"{k}={v}" for k, v in event.items() if k not in ("event", "time")))

    try:
        yield on_event
    finally:
        bar.close()


def parse_param_overrides(pairs: list[str], model) -> dict:
    """`--param name=value` pairs, typed by the params model (its fields are the CLI's flags)."""
    from easyphoto_core.params import field_specs

    specs, values = field_specs(model), {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in specs:
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(sorted(specs))}")
        values[name] = _typed_value(name, raw, specs[name]["type"])
    return values


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}
_KIND_WORDS = {"boolean": "true or false", "integer": "a whole number", "number": "a number"}


def _typed_value(name: str, raw: str, kind: str) -> object:
    """`raw` as the field's type; a value that is not one says which parameter and what it takes
    (bounds are checked by the params model, which names the field too)."""
    text = raw.strip()
    try:
        if kind == "boolean":
            return _BOOLEANS[text.lower()]
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except (KeyError, ValueError):
        raise ValueError(f"--param {name}={raw!r}: {name} takes {_KIND_WORDS[kind]}, "
                         f"not {raw!r}") from None
    return raw


def cmd_generate(args: argparse.Namespace) -> int:
    from easyphoto_core.params import GenerateParams, parse_params

    overrides = parse_param_overrides(args.param, GenerateParams)
    if args.seed is not None:
        overrides["seed"] = args.seed
    params = parse_params(GenerateParams, overrides)
    template = _read_template(Path(args.template))
    from easyphoto_core.studio import portrait_pipeline

    context = _studio(args)
    pipeline = portrait_pipeline(context)
    with _stage_progress() as on_progress:
        result = pipeline(template, args.user_id, params, callback=on_progress)
    _save_portrait(Path(args.out), result, params, context)
    print(f"portrait: {args.out}")
    for face in result.faces:
        score = "no face found" if face.identity is None else f"{face.identity.score:.2f}"
        print(f"  {face.user_id}: identity score {score}")
    return 0


def _read_template(path: Path):
    from easyphoto_core.images import DecodeLimits, decode_image, read_limited

    limits = DecodeLimits()  # the same size, pixel and format checks as uploaded photos
    return decode_image(read_limited(path, limits), limits=limits).rgb


def _studio(args: argparse.Namespace):
    """A studio context from the flags: the CLI builds its pipeline the way the studio does."""
    from easyphoto_core.context import StudioContext, StudioSettings
    from easyphoto_core.workspace import Workspace, default_workspace_root

    settings = StudioSettings(
        base_model=Path(args.base_model), controlnet_dirs=[Path(d) for d in args.controlnet_dir],
        weights_dir=Path(args.weights_dir) if args.weights_dir else None, device=args.device)
    return StudioContext(Workspace(args.workspace or default_workspace_root()), "diffusers",
                         settings=settings)


def _save_portrait(path: Path, result, params, context) -> None:
    from easyphoto_core import infotext

    text = infotext.for_portrait(params, result, workspace=context.workspace,
                                 base_model=context.settings.current_base_model())
    infotext.save_png(path, result.image, text)


@contextlib.contextmanager
def _stage_progress():
    from tqdm import tqdm

    bar = tqdm(total=0, unit="step", dynamic_ncols=True)

    def on_progress(step: int, total: int, stage: str) -> None:
        if step == 1:
            bar.reset(total=total)
            bar.set_description(stage)
        bar.update(step - bar.n)

    try:
        yield on_progress
    finally:
        bar.close()


def _add_photo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user-id", required=True, help="1-64 letters, digits, _ or -")
    parser.add_argument("--workspace", help="default: $EASYPHOTO_WORKSPACE or "
                        "./easyphoto_workspace")
    parser.add_argument("--weights-dir", help="downloaded weights (default: weights/)")
    parser.add_argument("photos", nargs="+", metavar="PHOTO")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m easyphoto_core", description=__doc__)
    parser.add_argument("--lang", choices=("en", "zh"), default=None,
                        help="language of messages (zh = 简体中文; default: $EASYPHOTO_LANG or en)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tiny = commands.add_parser(
        "tiny-model", help="write tiny random-weight SD1.5-shaped models (tests, smoke runs)")
    tiny.add_argument("out_dir", metavar="OUT_DIR")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--size", choices=("tiny", "sd15"), default="tiny",
                      help="sd15 = full SD1.5 architecture (for GPU benchmarks), still random")
    tiny.set_defaults(run=cmd_tiny_model)

    download = commands.add_parser("download", help="list or fetch the weights EasyPhoto uses")
    download.add_argument("names", nargs="*", metavar="NAME", help="registry names to fetch")
    download.add_argument("--list", action="store_true", help="print the registry and exit")
    download.add_argument("--weights-dir", help="root of downloaded weights (default: weights/ "
                          "or $EASYPHOTO_MODELS_DIR)")
    download.add_argument("--controlnet-dir", help="ControlNet models folder")
    download.add_argument("--lora-dir", help="LoRA folder")
    download.add_argument("--checkpoint-dir", help="Stable Diffusion checkpoints folder")
    download.set_defaults(run=cmd_download)

    preprocess = commands.add_parser("preprocess", help="check photos and build a dataset")
    _add_photo_arguments(preprocess)
    preprocess.set_defaults(run=cmd_preprocess)

    train = commands.add_parser("train", help="preprocess + train a user's face LoRA")
    _add_photo_arguments(train)
    train.add_argument("--base-model", required=True, help="SD1.5 single-file checkpoint")
    train.add_argument("--max-train-steps", type=int, help="override the default (800)")
    train.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="any training parameter, e.g. --param rank=64 (repeatable)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--lora-dir", action="append", default=[],
                       help="also copy the LoRA here (e.g. the WebUI's models/Lora)")
    train.add_argument("--resume", action="store_true",
                       help="continue a stopped CLI training from its last checkpoint")
    train.set_defaults(run=cmd_train)

    generate = commands.add_parser("generate", help="paint trained users into a template photo")
    generate.add_argument("--user-id", action="append", required=True,
                          help="one per face, left to right (repeat for several people)")
    generate.add_argument("--template", required=True, help="the template photo")
    generate.add_argument("--base-model", required=True, help="SD1.5 single-file checkpoint")
    generate.add_argument("--controlnet-dir", action="append", required=True,
                          help="folder with the ControlNet 1.1 canny/openpose/tile files")
    generate.add_argument("--workspace", help="default: $EASYPHOTO_WORKSPACE or "
                          "./easyphoto_workspace")
    generate.add_argument("--weights-dir", help="downloaded weights (default: weights/)")
    generate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    generate.add_argument("--seed", type=int, help="default: random")
    generate.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="any generation parameter, e.g. lora_weight=0.8")
    generate.add_argument("--out", required=True, help="output PNG")
    generate.set_defaults(run=cmd_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    from easyphoto_core.i18n import gettext, translate_message, use_language

    args = build_parser().parse_args(argv)
    with use_language(args.lang or os.environ.get("EASYPHOTO_LANG")):
        try:
            return args.run(args)
        except _user_errors() as error:
            print(gettext("error: {message}", message=translate_message(str(error))),
                  file=sys.stderr)
            return 1
