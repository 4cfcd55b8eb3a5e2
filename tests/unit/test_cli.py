from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "easyphoto_core", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_download_list_shows_every_record_and_its_state(tmp_path):
    (tmp_path / "face_detection_yunet_2023mar.onnx").write_bytes(
        (REPO.parent / "shared/models/face_detection_yunet_2023mar.onnx").read_bytes())
    result = run_cli("download", "--list", "--weights-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "present" in lines["face_detection_yunet_2023mar"]
    assert "missing" in lines["control_v11p_sd15_canny"]
    assert {"control_v11p_sd15_openpose", "control_v11f1e_sd15_tile"} <= set(lines)


def test_offline_download_says_what_to_put_where_without_traceback(tmp_path):
    result = run_cli("download", "control_v11p_sd15_canny", "--controlnet-dir", str(tmp_path),
                     env_extra={"EASYPHOTO_OFFLINE": "1"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "control_v11p_sd15_canny_fp16.safetensors") in result.stderr
    assert "https://" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_train_takes_any_param_and_a_bad_value_names_it(tmp_path, capsys):
    from easyphoto_core.cli import main, parse_param_overrides
    from easyphoto_core.params import TrainParams

    assert parse_param_overrides(["rank=64", "random_flip=off", "learning_rate=2e-4"],
                                 TrainParams) == {"rank": 64, "random_flip": False,
                                                  "learning_rate": 2e-4}
    workspace = tmp_path / "workspace"
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not read: the bad value stops the command first")
    for pair, words in (("rank=abc", "rank takes a whole number, not 'abc'"),
                        ("random_flip=maybe", "random_flip takes true or false"),
                        ("rank=999", "rank")):  # in type, out of bounds: the model names it
        code = main(["train", "--user-id", "obama", "--workspace", str(workspace),
                     "--base-model", str(tmp_path / "none.safetensors"), "--param", pair,
                     str(photo)])
        error = capsys.readouterr().err
        assert code == 1 and words in error, error
        assert "could not convert" not in error and "Traceback" not in error
    assert not workspace.exists()  # bad input changes nothing
