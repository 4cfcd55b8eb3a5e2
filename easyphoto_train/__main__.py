"""`python -m easyphoto_train --config JOB.json [--resume] [--parent-watch]`: the trainer.

Prints JSON-lines events (easyphoto_core.trainer_process.events) and exits with an ExitCode:
0 done, 1 error, 2 bad job file or input (a `bad_config` event names the field), 3 cancelled
(SIGTERM, the cancel file, or the parent gone), 4 out of GPU memory. A package that does not
import is an `environment` error naming the package, the error and the fix, not a traceback;
tracebacks go to stderr, which the core keeps in the job's log file.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from easyphoto_core.params import replaced
from easyphoto_core.trainer_process.config import TrainerConfig, TrainerConfigError, load_config
from easyphoto_core.trainer_process.events import EventWriter, ExitCode
from easyphoto_train.cancel import CancelToken


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # a bad command line is a bad job too: exit 2
        EventWriter().emit("error", kind="bad_config", message=f"bad arguments: {message}",
                           hint="python -m easyphoto_train --config JOB.json [--resume]")
        raise SystemExit(ExitCode.BAD_CONFIG)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m easyphoto_train")
    parser.add_argument("--config", required=True, type=Path, help="the job file (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--parent-watch", action="store_true",
                        help="stop when stdin closes (the parent process died)")
    args = parser.parse_args(argv)
    events = EventWriter()
    cancel = CancelToken()
    cancel.install_signal_handlers()
    if args.parent_watch:
        cancel.watch_parent(ExitCode.CANCELLED)
    try:
        config = load_config(args.config)
        if args.resume:
            config = replaced(config, resume=True)
    except TrainerConfigError as error:
        events.emit("error", kind="bad_config", message=str(error), hint="fix the job file")
        return ExitCode.BAD_CONFIG
    cancel.cancel_file, cancel.not_before = config.cancel_file, config.not_before
    return run_and_report(config, events, cancel)


def run_and_report(config: TrainerConfig, events: EventWriter, cancel: CancelToken) -> int:
    try:
        from easyphoto_core.sd.checkpoint import CheckpointError
        from easyphoto_train.run import Cancelled, run_training
    except Exception as error:  # e.g. diffusers that does not import under this transformers
        return environment_failure(events, error)
    try:
        run_training(config, events, cancel)
        return ExitCode.OK
    except Cancelled as stop:
        events.emit("cancelled", step=stop.step, reason=cancel.reason,
                    checkpoint=str(stop.checkpoint.lora_path) if stop.checkpoint else None)
        return ExitCode.CANCELLED
    except (TrainerConfigError, CheckpointError, FileNotFoundError) as error:
        events.emit("error", kind="bad_input", message=str(error), hint="")
        return ExitCode.BAD_CONFIG
    except Exception as error:  # every failure becomes an event the parent can show
        traceback.print_exc(file=sys.stderr)
        if _is_out_of_memory(error):
            events.emit("error", kind="out_of_memory", message=str(error).splitlines()[0],
                        hint="enable Low VRAM, or lower the rank or the resolution")
            return ExitCode.OUT_OF_MEMORY
        if _is_import_failure(error):
            return environment_failure(events, error)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        events.emit("error", kind="crash", message=f"the trainer stopped on an unexpected error: "
                    f"{first[:500]}", hint="the log holds the full traceback")
        return ExitCode.ERROR


def _is_import_failure(error: BaseException) -> bool:
    # diffusers wraps a failed lazy import as RuntimeError("Failed to import diffusers.x ...")
    return isinstance(error, ImportError) or "Failed to import" in str(error)


def environment_failure(events: EventWriter, error: BaseException) -> int:
    """Report a package that does not import: which one, its error, and the fix."""
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    cause, distribution = _describe_import_failure(error)
    events.emit("error", kind="environment", message=cause, hint=_fix_for(distribution))
    return ExitCode.ERROR


def _describe_import_failure(error: BaseException) -> tuple[str, str | None]:
    """'diffusers 0.37.1 does not import (...: cannot import name ...) under transformers 4.30.2'
    from the environment check when it finds the failure, else from the error itself."""
    try:
        from easyphoto_core.environment import check_environment

        failures = check_environment()
    except Exception:  # the check itself may not import in a broken environment
        failures = []
    if failures:
        failure = failures[0]
        under = _versions_under(failure.distribution)
        return f"{failure.describe()[:-1]}{under}.", failure.distribution
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    module = getattr(error, "name", None) or ""
    return (f"a package the trainer needs does not import: {first[:400]}",
            module.split(".")[0] or None)


def _versions_under(distribution: str) -> str:
    from easyphoto_core.environment import installed_version

    if distribution == "diffusers":
        others = [f"{name} {installed_version(name)}" for name in ("transformers",
                                                                   "huggingface_hub")
                  if installed_version(name)]
        return f" (under {', '.join(others)})" if others else ""
    return ""


def _fix_for(distribution: str | None) -> str:
    """install.py's fix (its compatibility table is the one place that knows which release fits),
    or the general one when it cannot be read."""
    if distribution:
        try:
            import importlib.util

            from easyphoto_core import PROJECT_ROOT

            spec = importlib.util.spec_from_file_location("easyphoto_install",
                                                          PROJECT_ROOT / "install.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # its dataclasses look their module up there
            spec.loader.exec_module(module)
            return " ".join(module._fix_for(distribution).split())
        except Exception:  # noqa: S110 - the general fix below still helps
            pass
    return (f'reinstall EasyPhoto\'s requirements for this Python: "{sys.executable}" -m pip '
            "install -r requirements.txt (in the WebUI: restart it, install.py picks releases "
            "that import)")


def _is_out_of_memory(error: BaseException) -> bool:
    try:
        import torch
    except Exception:
        return "out of memory" in str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


if __name__ == "__main__":
    sys.exit(main())
