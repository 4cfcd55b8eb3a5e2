"""The server's memory while trainings queue up: uploads go to disk, so RSS stays flat.

    python bench/queue_memory.py [--jobs 6] [--photos 12] [--photo-mb 4]

Starts a real `python app.py` (tiny random-weight SD1.5, CPU), starts a long training of three
real photos that holds the worker, then posts `--jobs` trainings of `--photos` uploads each
(noise JPEGs of about `--photo-mb` MB: phone-photo sizes) that queue behind it, and prints the server's resident memory (VmRSS) after each submission
and the bytes the queue holds on disk. Before uploads were spooled (one RAM copy per queued
photo) RSS grew by the uploads' size: 756 -> 2 127 MB for 3 jobs of 20 phone photos.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "testdata" / "faces"
sys.path.insert(0, str(REPO))
SLOW_TRAINING = {"resolution": 256, "rank": 4, "network_alpha": 4, "max_train_steps": 400,
                 "val_and_checkpointing_steps": 400, "validation": False}


def noise_jpeg(megabytes: float, seed: int) -> bytes:
    """A JPEG of about `megabytes` (noise barely compresses: ~0.9 byte per pixel at q95)."""
    side = int((megabytes * 1e6 / 0.9 / 3) ** 0.5 * 1.0)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(work: Path) -> tuple[subprocess.Popen, str]:
    from easyphoto_core.sd.tiny import write_tiny_models

    models = write_tiny_models(work / "tiny", seed=0)
    port = free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--workspace", str(work / "ws"),
         "--base-model", str(models.checkpoint), "--device", "cpu",
         "--weights-dir", str(REPO.parent / "shared" / "models")],
        cwd=REPO, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/easyphoto/v1"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/version", timeout=5).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("the server did not start: " + (work / "server.log").read_text()[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--photo-mb", type=float, default=4.0)
    args = parser.parse_args()
    photos = [noise_jpeg(args.photo_mb, seed) for seed in range(args.photos)]
    per_job = sum(map(len, photos)) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, url = start_server(work)
        try:
            holder = [("photos", (name, (FACES / name).read_bytes(), "image/jpeg"))
                      for name in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
            httpx.post(f"{url}/train", timeout=300, files=holder, data={
                "user_id": "holder", "params": json.dumps(SLOW_TRAINING)}).raise_for_status()
            time.sleep(2.0)
            print(f"uploads per job: {args.photos} photos, {per_job:.0f} MB")
            print(f"{'queued':>6} {'server RSS MB':>14} {'queue on disk MB':>17}")
            print(f"{0:>6} {rss_mb(server.pid):>14.0f} {0.0:>17.0f}")
            for number in range(1, args.jobs + 1):
                files = [("photos", (f"p{i}.jpg", data, "image/jpeg"))
                         for i, data in enumerate(photos)]
                response = httpx.post(f"{url}/train", timeout=300, files=files, data={
                    "user_id": f"user{number}", "params": json.dumps(SLOW_TRAINING)})
                response.raise_for_status()
                time.sleep(1.0)  # let the server settle (the spool's temp files closed)
                on_disk = folder_mb(work / "ws" / "jobs") if (work / "ws" / "jobs").is_dir() \
                    else 0.0
                print(f"{number:>6} {rss_mb(server.pid):>14.0f} {on_disk:>17.0f}")
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
