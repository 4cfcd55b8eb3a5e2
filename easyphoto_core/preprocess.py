"""A user's photos -> the training dataset and its report (DESIGN.md §1.1, steps 1-2).

`preprocess_photos` decodes and checks every photo, finds the user's face in each (by identity
when a photo has several faces), drops photos of someone else, crops and masks the kept faces and
writes the dataset folder in one swap:

    <user>/dataset/
        images/0000.png, images/0000.txt  training image (white outside the mask) + caption
        masks/0000.png                    0/255 mask: face region ∪ person segmentation
        metadata.jsonl                    one line per image (file names, caption, source, scores)
        embeddings.npy                    float32 N x dim unit identity embeddings, row = line
        reference.png                     the photo chosen for face fusion at inference
        report.json                       every input kept or dropped and why, backends used

The folder is built beside the old one and swapped in by renames, so a failure (too few usable
photos, a crash) leaves the previous dataset as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from easyphoto_core.callbacks import ProgressCallback
from easyphoto_core.faces.base import FaceDetection
from easyphoto_core.faces.chooser import FaceModels
from easyphoto_core.faces.geometry import (
    apply_transform,
    crop_transform,
    dilate_mask,
    frontal_score,
    square_crop_box,
    transform_box,
)
from easyphoto_core.faces.identity import majority_identity
from easyphoto_core.faces.regions import face_region_mask, retouch_skin, skin_mask
from easyphoto_core.images import DecodeLimits, ImageDecodeError, decode_image, read_limited
from easyphoto_core.params import TRIGGER_CAPTION, TrainParams
from easyphoto_core.workspace import DatasetFiles, UserFiles, atomic_write_json

log = logging.getLogger(__name__)

REPORT_VERSION = 1
MAX_FACES_PER_PHOTO = 8  # the largest ones; a crowd photo is not a training photo anyway
REFERENCE_MAX_SIDE = 2048  # face fusion needs the face, not 48 MP of background
REFERENCE_MIN_FACE = 160.0  # px: a face fused into a 512 crop spans about this much

"""``progress(done, total, message)``: photos analysed so far out of the inputs."""


@dataclass(frozen=True)
class InputPhoto:
    """An uploaded photo: its file name (for the report) and its bytes."""

    name: str
    data: bytes


PhotoSource = str | os.PathLike[str] | InputPhoto


@dataclass
class PhotoVerdict:
    """What happened to one input. `reason` codes: not_an_image, unsupported_format, too_large,
    too_many_pixels, truncated, unreadable, duplicate, too_many_photos, no_face, face_too_small,
    identity_outlier (None when kept)."""

    index: int
    name: str
    kept: bool = False
    reason: str | None = None
    message: str = ""
    faces_found: int = 0
    face_box: list[float] | None = None  # the chosen face, original photo pixels
    face_size: float | None = None  # its box's shorter side
    identity_similarity: float | None = None  # to the majority identity's centre
    frontal_score: float | None = None
    crop_box: list[float] | None = None  # original photo pixels
    crop_scale: float | None = None  # training resolution / crop side (> 1 = upscaled)
    image_file: str | None = None  # relative to the dataset folder
    mask_file: str | None = None


@dataclass
class PreprocessReport:
    user_id: str
    caption: str
    resolution: int
    photos: list[PhotoVerdict]
    backends: dict[str, Any]
    identity_threshold: float | None = None
    reference_index: int | None = None
    reference_name: str | None = None
    reference_file: str | None = None  # relative to the dataset folder
    reference_face_box: list[float] | None = None  # in reference_file's pixels
    reference_landmarks5: list[list[float]] | None = None
    embeddings_file: str | None = None
    seconds: float = 0.0
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    version: int = REPORT_VERSION

    @property
    def kept(self) -> list[PhotoVerdict]:
        return [v for v in self.photos if v.kept]

    @property
    def dropped(self) -> list[PhotoVerdict]:
        return [v for v in self.photos if not v.kept]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kept_count"] = len(self.kept)
        data["dropped_count"] = len(self.dropped)
        return data

    def summary(self) -> str:
        lines = [f"{len(self.kept)} of {len(self.photos)} photos kept"]
        lines += [f"  {v.name}: {'kept' if v.kept else 'dropped'} - {v.message}" for v in self.photos]
        if self.reference_name is not None:
            lines.append(f"reference photo: {self.reference_name}")
        return "\n".join(lines)


class PreprocessError(RuntimeError):
    """Preprocessing failed as a whole (too few usable photos...). `report` has every verdict;
    nothing was written and the previous dataset is untouched."""

    def __init__(self, message: str, report: PreprocessReport) -> None:
        super().__init__(message)
        self.report = report


# --- per photo: decode, detect, embed ------------------------------------------------------------


@dataclass
class _Candidate:
    """One face of a photo, big enough to train on, already cropped to the training size."""

    detection: FaceDetection  # original photo pixels
    embedding: np.ndarray
    crop_box: np.ndarray
    crop: np.ndarray  # resolution x resolution RGB
    crop_face: FaceDetection  # the face in crop pixels


@dataclass
class _Photo:
    verdict: PhotoVerdict
    source: PhotoSource
    candidates: list[_Candidate] = field(default_factory=list)
    chosen: _Candidate | None = None


def _source_name(source: PhotoSource) -> str:
    return source.name if isinstance(source, InputPhoto) else Path(source).name


def _read_source(source: PhotoSource, limits: DecodeLimits) -> bytes:
    if isinstance(source, InputPhoto):
        return source.data
    try:
        return read_limited(source, limits)
    except OSError as error:
        raise ImageDecodeError("unreadable", f"cannot read the file ({error})") from None


def _drop(verdict: PhotoVerdict, reason: str, message: str) -> PhotoVerdict:
    verdict.kept, verdict.reason, verdict.message = False, reason, message
    return verdict


def _analyse_photo(
    photo: _Photo, data: bytes, params: TrainParams, models: FaceModels, limits: DecodeLimits
) -> None:
    """Decode and find the candidate faces; fills `photo.candidates` or drops it with a reason."""
    verdict = photo.verdict
    try:
        rgb = decode_image(data, limits=limits).rgb
    except ImageDecodeError as error:
        _drop(verdict, error.reason, str(error))
        return
    faces = models.detector.detect(rgb)
    verdict.faces_found = len(faces)
    if not faces:
        _drop(verdict, "no_face", "no face found")
        return
    big = [f for f in faces if f.short_side >= params.min_face_size]
    if not big:
        largest = max(f.short_side for f in faces)
        _drop(verdict, "face_too_small",
              f"face too small: {largest:.0f} px, the minimum is {params.min_face_size} px "
              "(use a closer or larger photo)")
        return
    big = sorted(big, key=lambda f: -f.area)[:MAX_FACES_PER_PHOTO]
    photo.candidates = [_make_candidate(rgb, face, params, models) for face in big]


def _make_candidate(
    rgb: np.ndarray, face: FaceDetection, params: TrainParams, models: FaceModels
) -> _Candidate:
    height, width = rgb.shape[:2]
    side = params.resolution
    crop_box = square_crop_box(face.box, params.crop_ratio, (width, height))
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    region = rgb[y0:y1, x0:x1]
    shrinking = region.shape[0] > side
    crop = cv2.resize(region, (side, side),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    matrix = crop_transform(crop_box, side)
    crop_face = FaceDetection(
        box=transform_box(matrix, face.box),
        landmarks5=apply_transform(matrix, face.landmarks5),
        score=face.score,
    )
    # embed on the original pixels: the crop may be downscaled
    embedding = models.embedder.embed(rgb, face)
    return _Candidate(face, embedding, crop_box, crop, crop_face)


# --- the whole set ------------------------------------------------------------------------------


def preprocess_photos(
    photos: Sequence[PhotoSource],
    user: UserFiles,
    params: TrainParams,
    models: FaceModels,
    *,
    progress: ProgressCallback | None = None,
    limits: DecodeLimits | None = None,
) -> PreprocessReport:
    """Build `user`'s dataset from `photos` (paths or `InputPhoto`s) and return the report.

    Raises PreprocessError (with the report) when fewer than `params.min_photos` photos are
    usable; the previous dataset is then left as it was.
    """
    started = time.perf_counter()
    limits = limits or DecodeLimits()
    entries = _analyse_all(photos, params, models, limits, progress)
    report = PreprocessReport(
        user_id=user.user_id, caption=TRIGGER_CAPTION, resolution=params.resolution,
        photos=[entry.verdict for entry in entries], backends=models.describe(),
    )
    _choose_identity(entries, params, models, report)
    kept = [entry for entry in entries if entry.chosen is not None]
    if len(kept) < params.min_photos:
        report.seconds = round(time.perf_counter() - started, 3)
        raise PreprocessError(
            f"only {len(kept)} usable photo(s) of the same person, at least {params.min_photos}"
            " needed; " + _drop_summary(report), report,
        )
    samples = [_training_sample(entry, params, models) for entry in kept]
    reference = _choose_reference(kept, limits, report)
    _notify(progress, len(entries), len(entries), "writing the dataset")
    report.seconds = round(time.perf_counter() - started, 3)  # the analysis; writing is quick
    _write_dataset(user, report, kept=kept, samples=samples, reference=reference)
    log.info("preprocess %s: %d of %d photos kept in %.1f s (%s)", user.user_id, len(kept),
             len(entries), report.seconds, report.backends)
    return report


def _notify(progress: ProgressCallback | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def _drop_summary(report: PreprocessReport) -> str:
    counts: dict[str, int] = {}
    for verdict in report.dropped:
        counts[verdict.reason or "?"] = counts.get(verdict.reason or "?", 0) + 1
    return "dropped: " + (", ".join(f"{n} {r}" for r, n in sorted(counts.items())) or "none")


def _analyse_all(
    photos: Sequence[PhotoSource],
    params: TrainParams,
    models: FaceModels,
    limits: DecodeLimits,
    progress: ProgressCallback | None,
) -> list[_Photo]:
    entries: list[_Photo] = []
    seen: dict[str, str] = {}  # sha256 -> first name, to drop the same file given twice
    for index, source in enumerate(photos):
        entry = _Photo(verdict=PhotoVerdict(index=index, name=_source_name(source)), source=source)
        entries.append(entry)
        _notify(progress, index, len(photos), f"checking {entry.verdict.name}")
        if index >= params.max_photos:
            _drop(entry.verdict, "too_many_photos", f"over the maximum of {params.max_photos}")
            continue
        try:
            data = _read_source(source, limits)
        except ImageDecodeError as error:
            _drop(entry.verdict, error.reason, str(error))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            _drop(entry.verdict, "duplicate", f"the same file as {seen[digest]}")
            continue
        seen[digest] = entry.verdict.name
        _analyse_photo(entry, data, params, models, limits)
    _notify(progress, len(photos), len(photos), "photos checked")
    return entries


def _choose_identity(
    entries: list[_Photo], params: TrainParams, models: FaceModels, report: PreprocessReport
) -> None:
    """Pick each photo's face of the majority identity; drop the photos without one."""
    with_faces = [entry for entry in entries if entry.candidates]
    if not with_faces:
        return
    identity = majority_identity(
        [np.stack([c.embedding for c in entry.candidates]) for entry in with_faces],
        same_person_similarity=models.embedder.same_person_similarity,
        tolerance=params.identity_tolerance,
    )
    report.identity_threshold = round(identity.threshold, 4)
    for entry, match in zip(with_faces, identity.matches, strict=True):
        verdict = entry.verdict
        verdict.identity_similarity = round(match.similarity, 4)
        if match.face_index is None:
            _drop(verdict, "identity_outlier",
                  f"a different person from the other photos (similarity {match.similarity:.2f},"
                  f" same person from {identity.threshold:.2f})")
            continue
        entry.chosen = entry.candidates[match.face_index]
        face = entry.chosen.detection
        verdict.kept, verdict.reason = True, None
        verdict.face_box = [round(float(v), 2) for v in face.box]
        verdict.face_size = round(face.short_side, 1)
        verdict.frontal_score = round(frontal_score(face.landmarks5), 4)
        verdict.crop_box = [float(v) for v in entry.chosen.crop_box]
        verdict.crop_scale = round(params.resolution / float(entry.chosen.crop_box[2]
                                                             - entry.chosen.crop_box[0]), 3)
        several = f", the user's face of {verdict.faces_found}" if verdict.faces_found > 1 else ""
        upscaled = f", upscaled x{verdict.crop_scale:.1f}" if verdict.crop_scale > 1.5 else ""
        verdict.message = f"kept{several}{upscaled}"


# --- training images and masks ------------------------------------------------------------------


@dataclass
class _Sample:
    image: np.ndarray  # RGB, white outside the mask
    mask: np.ndarray  # 0/255


def _training_sample(entry: _Photo, params: TrainParams, models: FaceModels) -> _Sample:
    """Mask = face region ∪ the face's person; retouched skin; white elsewhere."""
    assert entry.chosen is not None
    crop, face = entry.chosen.crop, entry.chosen.crop_face
    shape = crop.shape[:2]
    dense = models.landmarks.landmarks(crop, face) if models.landmarks is not None else None
    face_mask = face_region_mask(shape, face, dense)
    # a margin around the face: hairline and ears belong to the identity too
    mask = dilate_mask(face_mask, max(1, round(face.short_side * 0.08)))
    if models.segmenter is not None:
        mask = np.maximum(mask, _person_of_face(models.segmenter.person_mask(crop), face_mask))
    else:
        mask = np.maximum(mask, dilate_mask(face_mask, max(1, round(face.short_side * 0.25))))
    if params.skin_retouching:
        crop = retouch_skin(crop, skin_mask(crop, face, dense))
    # feather outward only, so everything the mask covers stays exactly the photo's pixels
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.5)
    alpha = np.maximum(alpha, mask.astype(np.float32) / 255.0)[..., None]
    image = crop * alpha + 255.0 * (1.0 - alpha)
    return _Sample(image=np.clip(np.rint(image), 0, 255).astype(np.uint8), mask=mask)


def _person_of_face(person: np.ndarray, face_mask: np.ndarray) -> np.ndarray:
    """The parts of a person mask that touch the face: in a crop with two people, the other one
    is background."""
    count, labels = cv2.connectedComponents((person > 0).astype(np.uint8), connectivity=8)
    touching = np.unique(labels[(face_mask > 0) & (labels > 0)])
    return np.where(np.isin(labels, touching), 255, 0).astype(np.uint8) if count > 1 else person


def _choose_reference(
    kept: list[_Photo], limits: DecodeLimits, report: PreprocessReport
) -> np.ndarray:
    """The kept photo with the best identity similarity x frontal score (x a sharpness factor
    for faces under REFERENCE_MIN_FACE px, which face fusion would have to upscale), re-decoded
    (photos are not held in memory between steps), shrunk to REFERENCE_MAX_SIDE."""
    def score(entry: _Photo) -> float:
        verdict = entry.verdict
        sharpness = min(1.0, (verdict.face_size or 0.0) / REFERENCE_MIN_FACE)
        return (max(verdict.identity_similarity or 0.0, 0.0) * (verdict.frontal_score or 0.0)
                * sharpness)

    best = max(kept, key=score)
    assert best.chosen is not None
    rgb = decode_image(_read_source(best.source, limits), limits=limits).rgb
    scale = min(1.0, REFERENCE_MAX_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    face = best.chosen.detection
    report.reference_index = best.verdict.index
    report.reference_name = best.verdict.name
    report.reference_face_box = [round(float(v) * scale, 2) for v in face.box]
    report.reference_landmarks5 = [[round(float(v) * scale, 2) for v in pt] for pt in face.landmarks5]
    return rgb


# --- writing ------------------------------------------------------------------------------------


def _encode_png(rgb_or_mask: np.ndarray) -> bytes:
    pixels = rgb_or_mask if rgb_or_mask.ndim == 2 else cv2.cvtColor(rgb_or_mask, cv2.COLOR_RGB2BGR)
    # compression 1: the dataset is read once by the trainer; encoding speed matters more
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # the folder swap below must not expose unwritten files


def _write_dataset(
    user: UserFiles,
    report: PreprocessReport,
    *,
    kept: list[_Photo],
    samples: list[_Sample],
    reference: np.ndarray,
) -> None:
    """Write everything into a fresh folder beside the dataset, then swap it in."""
    user.root.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_swap(user)
    staging = user.root / f".dataset-new-{uuid.uuid4().hex[:12]}"
    try:
        (staging / "images").mkdir(parents=True)
        (staging / "masks").mkdir()
        lines = []
        for number, (entry, sample) in enumerate(zip(kept, samples, strict=True)):
            lines.append(_write_sample(staging, number, entry, sample))
        files = DatasetFiles(staging)
        _write_file(files.index,
                    "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode())
        embeddings = np.stack([entry.chosen.embedding for entry in kept if entry.chosen])
        with open(files.embeddings, "wb") as handle:
            np.save(handle, embeddings.astype(np.float32))
        _write_file(files.reference_photo, _encode_png(reference))
        report.reference_file = files.reference_photo.name
        report.embeddings_file = files.embeddings.name
        atomic_write_json(files.report, report.to_dict())
        _swap_in(staging, user.dataset_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_sample(staging: Path, number: int, entry: _Photo, sample: _Sample) -> dict[str, Any]:
    assert entry.chosen is not None
    stem = f"{number:04d}"
    image_file, mask_file = f"images/{stem}.png", f"masks/{stem}.png"
    _write_file(staging / image_file, _encode_png(sample.image))
    _write_file(staging / mask_file, _encode_png(sample.mask))
    _write_file(staging / "images" / f"{stem}.txt", TRIGGER_CAPTION.encode())  # kohya-style
    verdict = entry.verdict
    verdict.image_file, verdict.mask_file = image_file, mask_file
    face = entry.chosen.crop_face
    return {
        "file_name": image_file,
        "mask_file_name": mask_file,
        "text": TRIGGER_CAPTION,
        "source": verdict.name,
        "source_index": verdict.index,
        "embedding_row": number,
        "identity_similarity": verdict.identity_similarity,
        "frontal_score": verdict.frontal_score,
        "face_box": [round(float(v), 2) for v in face.box],
        "landmarks5": [[round(float(v), 2) for v in pt] for pt in face.landmarks5],
    }


def _swap_in(staging: Path, dataset_dir: Path) -> None:
    """Rename `staging` onto `dataset_dir`; the old folder is parked, then removed."""
    parked = None
    if dataset_dir.exists():
        parked = dataset_dir.with_name(f".dataset-old-{uuid.uuid4().hex[:12]}")
        os.replace(dataset_dir, parked)
    try:
        os.replace(staging, dataset_dir)
    except BaseException:
        if parked is not None:
            os.replace(parked, dataset_dir)
        raise
    if parked is not None:
        shutil.rmtree(parked, ignore_errors=True)


def _recover_interrupted_swap(user: UserFiles) -> None:
    """After a crash mid-swap: put a parked old dataset back if there is no dataset, and remove
    leftover staging folders. (One preprocess per user at a time: the job queue's rule.)"""
    parked = sorted(user.root.glob(".dataset-old-*"), key=lambda p: p.stat().st_mtime)
    if parked and not user.dataset_dir.exists():
        os.replace(parked.pop(), user.dataset_dir)
    for leftover in [*parked, *user.root.glob(".dataset-new-*")]:
        shutil.rmtree(leftover, ignore_errors=True)
