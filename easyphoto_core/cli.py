"""`python -m easyphoto_core COMMAND ...`: the command-line interface of the core.

Each command is a small function taking the parsed arguments; heavy imports (torch, diffusers,
face models) happen inside the command so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from easyphoto_core.weights import WeightsError

# Errors whose message already says what is wrong and what to do: printed without a traceback.
USER_ERRORS = (ValueError, OSError, WeightsError)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m easyphoto_core", description=__doc__)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
