from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "faces"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from easyphoto_core.sd.tiny import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


def write_dataset(folder: Path, photos: list[Path], resolution: int) -> Path:
    """A dataset in the preprocess layout: images listed in metadata.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, photo in enumerate(photos):
        image = Image.open(photo).convert("RGB")
        side = min(image.size)
        image = image.crop((0, 0, side, side)).resize((resolution, resolution))
        name = f"{index:03d}.png"
        image.save(folder / name)
        lines.append(json.dumps({"file_name": name, "text": "easyphoto_face, easyphoto, 1person"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, faces_dir, face_models):
    """The real preprocess of three real photos of one person, at 256 px."""
    from easyphoto_core.params import TrainParams, parse_params
    from easyphoto_core.preprocess import preprocess_photos
    from easyphoto_core.workspace import Workspace

    user = Workspace(tmp_path_factory.mktemp("ws")).user("obama")
    photos = [faces_dir / name for name in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    params = parse_params(TrainParams, {"resolution": 256})
    preprocess_photos(photos, user, params, face_models)
    return user.dataset_dir


def random_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (count, size, size, 3), dtype=np.uint8)
