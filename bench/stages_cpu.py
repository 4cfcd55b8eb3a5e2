"""Seconds per face of the generation pipeline's non-diffusion stages on this machine's CPU
(issue 5: target <= 0.5 s per face on 2 cores).

Templates are the real test photos with 1, 2 and 6 faces (5 painted: at most 5 user ids) (biden.jpg, two_people.jpg,
group6.jpg); every face is painted with the same user (reference photo obama.jpg, face-id image
obama2.jpg). Per template and run, timed stage by stage:

  detection   template faces left to right + face mesh per face, and pairing
  crop        crop x3 and resize (short side 512)
  fusion      face fusion before and after (two calls: the pipeline runs both)
  replace     the replace image (face-id face warped onto the template face)
  controls    MediaPipe pose on the replace image, OpenPose drawing, canny, colour
  masks       face / ring / eyes / lips masks and the paste weight
  color       colour shift toward the template face (two calls: middle and last)
  paste       paste back into the template and the seam mask

The user's reference and face-id faces are located once per job (not per face): timed apart.
The identity score (one embedding per output face) is printed apart too, as it depends on the
embedder (dlib here; ArcFace with the insightface pack).

    python bench/stages_cpu.py [--runs 5] [--faces-dir DIR] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from easyphoto_core.faces import FaceModels  # noqa: E402
from easyphoto_core.params import GenerateParams  # noqa: E402
from easyphoto_core.pipeline import stages  # noqa: E402
from easyphoto_core.weights import WeightPaths  # noqa: E402

SHARED = REPO.parent / "shared"
TEMPLATES = ["biden.jpg", "two_people.jpg", "group6.jpg"]  # 1 + 2 + 5 painted faces
STAGES = ["detection", "crop", "fusion", "replace", "controls", "masks", "color", "paste"]


def load(folder: Path, name: str) -> np.ndarray:
    with Image.open(folder / name) as image:
        return np.asarray(image.convert("RGB"))


class StageClock:
    """Accumulates wall seconds per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, stage: str, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[stage] += time.perf_counter() - start
        return result


def run_template(
    template: np.ndarray,
    models: FaceModels,
    user: tuple[np.ndarray, stages.LocatedFace],
    face_id: tuple[np.ndarray, stages.LocatedFace],
    params: GenerateParams,
    clock: StageClock,
) -> int:
    """Every stage for every paired face of `template` (at most 5: the sixth face of group6 is
    left alone, as a face with no user is); returns the number of faces painted."""
    faces = clock.time(
        "detection", stages.locate_faces, template, detector=models.detector,
        landmarks=models.landmarks,
    )
    user_ids = ["user"] * min(len(faces), stages.MAX_USER_IDS)
    paired = clock.time("detection", stages.pair_faces_with_users, faces, user_ids)
    pieces = []
    for slot in (slot for slot in paired if slot.user_id is not None):
        crop = clock.time(
            "crop", stages.crop_face, template, slot.face,
            short_side=params.first_diffusion_resolution,
        )
        fused = clock.time(
            "fusion", stages.fuse_face, crop.image, crop.face, *user,
            ratio=params.face_fusion_ratio_before,
        )
        replaced = clock.time("replace", stages.replace_face, crop.image, crop.face, *face_id)
        body = clock.time("controls", models.pose.pose, replaced.image) if models.pose else None
        clock.time(
            "controls", stages.control_images, fused.image, replaced.source_face, body=body,
            with_color=True,
        )
        masks = clock.time(
            "masks", stages.face_masks, crop.image.shape[:2], crop.face,
            dilation=params.mask_dilation,
        )
        # the diffusion would run here; its stand-in output is the fused crop
        generated = clock.time(
            "color", stages.color_shift, fused.image, crop.image, mask=masks.face,
            weight=masks.paste_weight,
        )
        generated = clock.time(
            "fusion", stages.fuse_face, generated, crop.face, *user,
            ratio=params.face_fusion_ratio_after,
        ).image
        generated = clock.time(
            "color", stages.color_shift, generated, crop.image, mask=masks.face,
            weight=masks.paste_weight,
        )
        pieces.append(stages.PastePiece(image=generated, crop=crop, weight=masks.paste_weight))
    result = clock.time("paste", stages.paste_faces, template, pieces)
    if len(pieces) > 1:
        clock.time("paste", stages.seam_mask, result.weight)
    return len(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--faces-dir", type=Path, default=SHARED / "testdata" / "faces")
    parser.add_argument("--models-dir", type=Path, default=SHARED / "models")
    args = parser.parse_args()

    start = time.perf_counter()
    models = FaceModels.load(
        WeightPaths.standalone(args.models_dir, env={}), offline=True, load_pose=True
    )
    print(f"face models loaded in {time.perf_counter() - start:.2f} s: {models.describe()}")
    params = GenerateParams()
    reference_photo, face_id_photo = load(args.faces_dir, "obama.jpg"), load(args.faces_dir, "obama2.jpg")

    start = time.perf_counter()
    user = (reference_photo, stages.locate_main_face(
        reference_photo, detector=models.detector, landmarks=models.landmarks))
    face_id = (face_id_photo, stages.locate_main_face(
        face_id_photo, detector=models.detector, landmarks=models.landmarks))
    print(f"user faces (reference + face-id, once per job): {time.perf_counter() - start:.3f} s")
    references = np.stack([models.embedder.embed(user[0], user[1].detection)])

    templates = {name: load(args.faces_dir, name) for name in TEMPLATES}
    for template in templates.values():  # warm-up: first calls build OpenCV/TFLite state
        run_template(template, models, user, face_id, params, StageClock())

    per_face_runs: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.runs):
        clock, face_count = StageClock(), 0
        for template in templates.values():
            face_count += run_template(template, models, user, face_id, params, clock)
        for stage in STAGES:
            per_face_runs[stage].append(clock.seconds[stage] / face_count)
        per_face_runs["total"].append(sum(clock.seconds.values()) / face_count)

    print(f"\nseconds per face, median of {args.runs} runs over {face_count} faces "
          f"({', '.join(TEMPLATES)}):")
    for stage in [*STAGES, "total"]:
        print(f"  {stage:<10} {statistics.median(per_face_runs[stage]):.4f}")
    total = statistics.median(per_face_runs["total"])
    print(f"target <= 0.5 s per face: {'met' if total <= 0.5 else 'MISSED'} ({total:.3f} s)")

    crop = stages.crop_face(templates["biden.jpg"], stages.locate_faces(
        templates["biden.jpg"], detector=models.detector)[0])
    start = time.perf_counter()
    for _ in range(args.runs):
        stages.identity_score(crop.image, references, embedder=models.embedder,
                              face=crop.face.detection)
    print(f"identity score ({models.embedder.name}), per output face: "
          f"{(time.perf_counter() - start) / args.runs:.4f} s")
    models.close()


if __name__ == "__main__":
    main()
