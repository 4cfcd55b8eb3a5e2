"""Seconds to preprocess 20 photos on this machine's CPU (DESIGN.md §5; target <= 10 s on 2 cores).

The 20 photos are the real test photos of one person (../shared/testdata/faces/obama*.jpg)
repeated with flips and crops, written as JPEG files, so decoding is timed too. Loading the face
models is timed separately (a job loads them once).

    python bench/preprocess_cpu.py [--runs 3] [--faces-dir DIR] [--models-dir DIR] [--fallback]

--fallback times the embedded fallbacks alone: dlib's HOG detector instead of YuNet, and no
MediaPipe (5-landmark face masks, no person segmentation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from easyphoto_core.faces import FaceModels  # noqa: E402
from easyphoto_core.params import TrainParams  # noqa: E402
from easyphoto_core.preprocess import preprocess_photos  # noqa: E402
from easyphoto_core.weights import WeightPaths  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402

SOURCES = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_small.jpg"]
SHARED = REPO.parent / "shared"


def make_photos(faces_dir: Path, folder: Path, count: int = 20) -> list[Path]:
    """`count` JPEGs: each source as is, mirrored, cropped, mirrored and cropped, and rotated."""
    variants = [
        lambda im: im,
        ImageOps.mirror,
        lambda im: _crop(im, 0.90),
        lambda im: ImageOps.mirror(_crop(im, 0.80)),
        lambda im: im.rotate(8, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white"),
    ]
    photos = []
    for number in range(count):
        source = SOURCES[number % len(SOURCES)]
        image = Image.open(faces_dir / source).convert("RGB")
        image = variants[(number // len(SOURCES)) % len(variants)](image)
        path = folder / f"{number:02d}_{Path(source).stem}.jpg"
        image.save(path, "JPEG", quality=92)
        photos.append(path)
    return photos


def _crop(image: Image.Image, keep: float) -> Image.Image:
    """The central `keep` fraction of each side (faces in these photos are central)."""
    width, height = image.size
    dx, dy = round(width * (1 - keep) / 2), round(height * (1 - keep) / 2)
    return image.crop((dx, dy, width - dx, height - dy))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faces-dir", type=Path, default=SHARED / "testdata" / "faces")
    parser.add_argument("--models-dir", type=Path, default=SHARED / "models")
    parser.add_argument("--fallback", action="store_true", help="dlib detector, no MediaPipe")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="easyphoto-bench-") as temp:
        # an empty models folder + offline: no YuNet file, so the chooser falls back to dlib
        models_dir = Path(temp) if args.fallback else args.models_dir
        started = time.perf_counter()
        models = FaceModels.load(WeightPaths.standalone(models_dir, env={}), offline=True,
                                 use_mediapipe=not args.fallback)
        load_seconds = time.perf_counter() - started
        return _run(models, load_seconds, args.faces_dir, args.runs)


def _run(models: FaceModels, load_seconds: float, faces_dir: Path, runs: int) -> int:
    backends = models.describe()
    print(f"cpu cores: {os.cpu_count()}")
    print(f"backends: detector={backends['detector']} embedder={backends['embedder']} "
          f"landmarks={backends['landmarks']} segmenter={backends['segmenter']}")
    print(f"model load: {load_seconds:.2f} s")
    timings = []
    with tempfile.TemporaryDirectory(prefix="easyphoto-bench-") as temp:
        photos = make_photos(faces_dir, Path(temp))
        params = TrainParams()
        for run in range(runs):
            user = Workspace(Path(temp) / "ws").user(f"bench{run}")
            started = time.perf_counter()
            report = preprocess_photos(photos, user, params, models)
            timings.append(time.perf_counter() - started)
            print(f"run {run + 1}: {timings[-1]:.2f} s for {len(photos)} photos "
                  f"({len(report.kept)} kept)")
    models.close()
    best, median = min(timings), statistics.median(timings)
    print(f"preprocess 20 photos: {median:.2f} s median, {best:.2f} s best "
          f"({median / len(photos) * 1000:.0f} ms per photo); target <= 10 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
