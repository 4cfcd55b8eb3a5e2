"""`python -m easyphoto_core generate` end to end: tiny models, a stand-in trained user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from easyphoto_core.workspace import Workspace
from tests.pipeline.test_portrait import train_stand_in

REPO = Path(__file__).resolve().parents[2]


def test_generate_writes_the_portrait_with_scores(tmp_path, tiny_files, faces_dir, face_models,
                                                   shared_models_dir):
    workspace = Workspace(tmp_path / "ws")
    train_stand_in(workspace, "obama", [faces_dir / f"obama{n}.jpg" for n in ("", "2", "3")],
                   face_models, tiny_files.checkpoint, seed=1)
    out = tmp_path / "out" / "portrait.png"
    command = [sys.executable, "-m", "easyphoto_core", "generate", "--user-id", "obama",
               "--template", str(faces_dir / "biden.jpg"), "--base-model",
               str(tiny_files.checkpoint), "--controlnet-dir", str(tiny_files.checkpoint.parent),
               "--workspace", str(workspace.root), "--weights-dir", str(shared_models_dir),
               "--device", "cpu", "--seed", "3", "--out", str(out),
               "--param", "first_diffusion_resolution=256", "--param", "first_diffusion_steps=4",
               "--param", "second_diffusion_steps=4"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with Image.open(out) as image:
        assert image.size == Image.open(faces_dir / "biden.jpg").size
        assert "EasyPhoto First diffusion steps: 4" in image.info["parameters"]
    assert "obama: identity score" in result.stdout


def test_generate_with_an_unknown_user_says_so(tmp_path, tiny_files, faces_dir,
                                               shared_models_dir):
    command = [sys.executable, "-m", "easyphoto_core", "generate", "--user-id", "ghost",
               "--template", str(faces_dir / "biden.jpg"), "--base-model",
               str(tiny_files.checkpoint), "--controlnet-dir", str(tiny_files.checkpoint.parent),
               "--workspace", str(tmp_path / "ws"), "--weights-dir", str(shared_models_dir),
               "--device", "cpu", "--out", str(tmp_path / "x.png")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "ghost" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()
