"""`python -m easyphoto_train --config JOB.json [--resume]`: the training subprocess.

Prints JSON-lines events (easyphoto_core.training.events) and exits with an ExitCode:
0 done, 1 error, 2 bad job or input, 3 cancelled (SIGTERM / cancel file), 4 out of GPU memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from easyphoto_core.training.events import EventWriter, ExitCode
from easyphoto_core.training.job import JobError, load_job
from easyphoto_train.cancel import CancelToken


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m easyphoto_train")
    parser.add_argument("--config", required=True, type=Path, help="the job file (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    events = EventWriter()
    try:
        job = load_job(args.config)
        if args.resume:
            job = dataclasses.replace(job, resume=True)
    except JobError as error:
        events.emit("error", kind="bad_config", message=str(error), hint="fix the job file")
        return ExitCode.BAD_CONFIG
    cancel = CancelToken(job.cancel_file)
    cancel.install_signal_handlers()
    return run_and_report(job, events, cancel)


def run_and_report(job, events: EventWriter, cancel: CancelToken) -> int:
    from easyphoto_core.sd.checkpoint import CheckpointError
    from easyphoto_train.run import Cancelled, run_training

    try:
        run_training(job, events, cancel)
        return ExitCode.OK
    except Cancelled as stop:
        events.emit("cancelled", step=stop.step,
                    checkpoint=str(stop.checkpoint.lora_path) if stop.checkpoint else None)
        return ExitCode.CANCELLED
    except (JobError, CheckpointError, FileNotFoundError) as error:
        events.emit("error", kind="bad_input", message=str(error), hint="")
        return ExitCode.BAD_CONFIG
    except Exception as error:  # every failure becomes an event the parent can show
        if _is_out_of_memory(error):
            events.emit("error", kind="out_of_memory", message=str(error).splitlines()[0],
                        hint="enable Low VRAM, or lower the rank or the resolution")
            return ExitCode.OUT_OF_MEMORY
        events.emit("error", kind=type(error).__name__, message=str(error),
                    hint="see the traceback on stderr")
        traceback.print_exc(file=sys.stderr)
        return ExitCode.ERROR


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


if __name__ == "__main__":
    sys.exit(main())
