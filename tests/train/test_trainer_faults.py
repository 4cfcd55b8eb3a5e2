"""The trainer under faults: bad job files, a package that does not import, its parent killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from easyphoto_core.trainer_process.events import ExitCode, parse_event
from tests.train.conftest import write_dataset
from tests.train.test_trainer import FAST, REPO, make_job


def run_job_file(tmp_path, content, env=None):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(content))
    # the project on PYTHONPATH, as the runner sets it: in A1111 the extension is not installed
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO)]))
    result = subprocess.run([sys.executable, "-m", "easyphoto_train", "--config", str(job_file)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    events = [e for e in map(parse_event, result.stdout.splitlines()) if e]
    return result, events


@pytest.fixture()
def valid_job(tmp_path):
    (tmp_path / "ws" / "data").mkdir(parents=True)
    (tmp_path / "base.safetensors").write_bytes(b"not read before the job is checked")
    return {"user_id": "ann", "base_model": str(tmp_path / "base.safetensors"),
            "dataset_dir": str(tmp_path / "ws" / "data"), "output_dir": str(tmp_path / "ws" / "out"),
            "workspace": str(tmp_path / "ws"), "params": {}, "device": "cpu",
            "lora_copy_dirs": [], "cancel_file": None}


BAD = [
    ({"lora_copy_dirs": "/tmp"}, "lora_copy_dirs", "must be a list of folders"),
    ({"lora_copy_dirs": ["relative/dir"]}, "lora_copy_dirs", "absolute path"),
    ({"params": [1, 2]}, "params", "must be an object"),
    ({"params": {"rank": 0}}, "params", "rank"),
    ({"cancel_file": 123}, "cancel_file", "must be a path"),
    ({"device": "tpu"}, "device", "auto, cpu, mps, cuda"),
    ({"resume": "yes"}, "resume", "true or false"),
    ({"output_dir": "/etc/easyphoto"}, "output_dir", "outside the workspace"),
    ({"output_dir": "out"}, "output_dir", "absolute path"),
    ({"dataset_dir": "/nonexistent/data"}, "dataset_dir", "is not a folder"),
    ({"surprise": 1}, "surprise", "unknown field"),
    ({"user_id": "CON"}, "user_id", "Windows reserves"),
]


def test_bad_job_files_are_exit_2_with_a_bad_config_event_naming_the_field(tmp_path, valid_job):
    before = set(tmp_path.rglob("*"))
    for change, field, words in BAD:
        result, events = run_job_file(tmp_path, {**valid_job, **change})
        assert result.returncode == ExitCode.BAD_CONFIG, (change, result.stderr[-800:])
        assert [e["event"] for e in events] == ["error"], change
        assert events[0]["kind"] == "bad_config" and f"'{field}'" in events[0]["message"], events
        assert words in events[0]["message"], events[0]["message"]
        assert "Traceback" not in result.stderr, change
    job_file = tmp_path / "job.json"
    assert set(tmp_path.rglob("*")) - before == {job_file}  # nothing written: no t/, m/, p/
    assert not any(p.name.startswith("easyphoto_") for p in tmp_path.parent.iterdir())


def test_a_package_that_does_not_import_is_reported_with_its_cause_and_fix(tmp_path, valid_job,
                                                                         faces_dir, tiny_models):
    """A package the trainer imports that is broken in the host's venv. (A diffusers that needs
    a newer transformers than the host has, as on A1111 1.10.1, no longer stops a training:
    the trainer does not import diffusers, test_trainer.py checks that.)"""
    from easyphoto_core.trainer_process.config import parse_config
    from easyphoto_core.trainer_process.runner import TrainingFailed, raise_for_outcome, run_trainer

    fake = tmp_path / "shadow" / "safetensors"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'Dinov2WithRegistersConfig' from "
        "'transformers'\")\n")
    write_dataset(tmp_path / "ws" / "data", [faces_dir / "obama.jpg"], 64)
    job = parse_config({**valid_job, "base_model": str(tiny_models.checkpoint)})
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tmp_path / "shadow")
    try:
        outcome = run_trainer(job, tmp_path / "ws" / "job.json", log_file=tmp_path / "ws" / "t.log")
    finally:
        if env_before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = env_before
    assert outcome.exit_code == ExitCode.ERROR
    error = [e for e in outcome.events if e["event"] == "error"][-1]
    assert error["kind"] == "environment"
    assert "does not import" in error["message"]
    assert "Dinov2WithRegistersConfig" in error["message"]
    assert "pip install" in error["hint"]
    with pytest.raises(TrainingFailed) as failed:
        raise_for_outcome(outcome)
    message = str(failed.value)
    assert "Dinov2WithRegistersConfig" in message and "see the traceback" not in message
    assert str(tmp_path / "ws" / "t.log") in message
    assert "Traceback" in (tmp_path / "ws" / "t.log").read_text()  # the full stderr is kept


PARENT = textwrap.dedent("""
    import sys
    from easyphoto_core.trainer_process.config import load_config
    from easyphoto_core.trainer_process.runner import run_trainer

    job = load_config(sys.argv[1])
    def on_event(event):
        print(event["event"], event.get("step"), event.get("pid"), flush=True)
    run_trainer(job, job.output_dir / "job.json", on_event=on_event)
""")


def test_the_trainer_stops_when_its_parent_is_killed(tiny_models, tiny_dataset, tmp_path):
    job = make_job(tmp_path, tiny_models, tiny_dataset,
                   **{**FAST, "max_train_steps": 400, "val_and_checkpointing_steps": 2})
    job_file = tmp_path / "first.json"
    job.save(job_file)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(job_file)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    trainer_pid = None
    for line in parent.stdout:
        kind, step, pid = line.split()
        trainer_pid = int(pid) if kind == "start" else trainer_pid
        if kind == "checkpoint":
            break
    assert trainer_pid is not None
    parent.kill()  # kill -9: no chance to clean up
    parent.wait()
    deadline = time.monotonic() + 240  # generous: a loaded CI machine; it stops within a step
    while time.monotonic() < deadline and _alive(trainer_pid):
        time.sleep(0.2)
    log = (job.output_dir / "job.log").read_text()
    assert not _alive(trainer_pid), f"the trainer outlived its killed parent: {log[-2000:]}"
    assert "stopping at the next step" in log, log[-2000:]  # the log says why it stopped
    assert (job.checkpoints_dir / "step-000002.safetensors").is_file()  # the checkpoint is kept
    assert (job.checkpoints_dir / "step-000002.optim.safetensors").is_file()  # resume needs it
    assert not (job.output_dir / "easyphoto_obama.safetensors").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; only its entry waits for its (dead) parent's reaper
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
