"""What the tab shows for a job record: progress bar, log, verdict and result galleries, job list.

Pure functions of a record (and files it names): no gradio here, so they are the same under
gradio 3.41 and the newest, and a test can call them directly.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from easyphoto_app.labels import reason_heading, stage_name, state_name, text
from easyphoto_core.i18n import translate_message
from easyphoto_core.jobs import FINISHED

ENDED = (*FINISHED, "interrupted")  # states a job stays in until someone acts

THUMBNAIL_SIDE = 256
# Share of a training job's bar each stage covers, so the bar always moves forward.
TRAIN_BAR = {"preprocess": (0.0, 0.08), "loading": (0.08, 0.12), "train": (0.12, 0.9),
             "validation": (0.12, 0.9), "selecting": (0.9, 0.97), "fusion": (0.9, 0.97),
             "done": (1.0, 1.0)}
GalleryItem = tuple[Image.Image, str]


# --- progress ---------------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar_fraction(record: Any) -> float:
    """How far the job is, 0..1: the stage's share of the bar, advanced by step/total."""
    if record.state == "done":
        return 1.0
    progress = record.progress
    step, total = progress.get("step") or 0, progress.get("total") or 0
    within = min(1.0, step / total) if total else 0.0
    if record.kind != "train":
        return within
    start, end = TRAIN_BAR.get(progress.get("stage", ""), (0.0, 0.0))
    return start + (end - start) * within


def progress_html(record: Any | None, *, now: float | None = None,
                  stage_since: float | None = None) -> str:
    """A bar plus one line: state, stage, step/total, loss, ETA and time spent in the stage (which
    moves every second, so a long validation or fusion never looks frozen)."""
    if record is None:
        return _bar("idle", "", 0.0, text("progress_idle"), busy=False)
    now = time.time() if now is None else now
    progress = record.progress
    parts = [state_name(record.state)]
    if record.state in ENDED:
        message = plain_message(record.message)
        parts.append("" if message == record.state else message)
    elif record.state == "queued":
        parts.append(text("progress_waiting"))
    else:
        parts += _running_parts(progress, now, stage_since)
    total = progress.get("total") or 0
    busy = record.state == "running" and not (progress.get("stage") == "train" and total)
    passes = progress.get("passes") or []
    extra = text("passes_seen", passes=", ".join(stage_name(p) for p in passes)) if passes else ""
    return _bar(record.state, progress.get("stage", ""), bar_fraction(record),
                " · ".join(p for p in parts if p), busy=busy, job_id=record.id, extra=extra)


def _running_parts(progress: dict[str, Any], now: float, stage_since: float | None) -> list[str]:
    parts = [stage_name(progress.get("stage"))]
    if progress.get("total"):
        parts.append(text("progress_step", step=progress.get("step", 0), total=progress["total"]))
    if progress.get("stage") == "train" and progress.get("loss") is not None:
        parts.append(text("progress_loss", loss=float(progress["loss"])))
    if progress.get("stage") == "train" and progress.get("eta_seconds") is not None:
        parts.append(text("progress_eta", eta=format_seconds(progress["eta_seconds"])))
    since = progress.get("stage_started") or stage_since
    if since:
        parts.append(text("progress_elapsed", elapsed=format_seconds(now - float(since))))
    return parts


def _bar(state: str, stage: str, fraction: float, line: str, *, busy: bool,
         job_id: str = "", extra: str = "") -> str:
    percent = f"{100 * max(0.0, min(1.0, fraction)):.1f}"
    classes = "easyphoto-progress" + (" easyphoto-progress-busy" if busy else "")
    return (f'<div class="{classes}" data-state="{html.escape(state)}" '
            f'data-stage="{html.escape(stage)}" data-job="{html.escape(job_id)}" '
            f'data-percent="{percent}">'
            f'<div class="easyphoto-progress-track"><div class="easyphoto-progress-fill" '
            f'style="width: {percent}%"></div></div>'
            f'<div class="easyphoto-progress-text">{html.escape(line)}</div>'
            + (f'<div class="easyphoto-progress-passes">{html.escape(extra)}</div>' if extra
               else "") + "</div>")


_CLASS_PREFIX = re.compile(r"^[A-Z][A-Za-z]*(Error|Exception|Failed|Cancelled|Interrupted): ")


def plain_message(message: str) -> str:
    """The job's message without a leading exception class name ("PreprocessError: ..."), in
    the current language (easyphoto_core.i18n)."""
    return translate_message(_CLASS_PREFIX.sub("", message or ""))


_LOG_STAMP = re.compile(r"(\d\d:\d\d:\d\d )(.*)", re.DOTALL)


def log_line(line: str) -> str:
    """A log line ("12:00:01 checkpoint saved at step 100", written in English by the job) in
    the current language; the time stamp stays."""
    match = _LOG_STAMP.fullmatch(line)
    if match is None:
        return translate_message(line)
    return match.group(1) + translate_message(match.group(2))


def log_text(record: Any | None) -> str:
    if record is None:
        return ""
    lines = [log_line(line) for line in record.progress.get("log") or []]
    if record.state in ENDED and record.message:
        lines.append(f"{state_name(record.state)}: {plain_message(record.message)}")
    return "\n".join(lines)


# --- images -----------------------------------------------------------------------------------


def thumbnail(path: Path | str | None, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """A small RGB copy of the image at `path`, or a grey tile when it is not an image."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
            image.thumbnail((side, side))
            return image
    except Exception:  # a fake .jpg, a truncated file: the verdict says why, the tile says "?"
        return placeholder(side)


def placeholder(side: int = THUMBNAIL_SIDE) -> Image.Image:
    tile = Image.new("RGB", (side, side), (200, 200, 200))
    inner = Image.new("RGB", (side // 2, side // 2), (160, 160, 160))
    tile.paste(inner, (side // 4, side // 4))
    return tile


def verdict_caption(photo: dict[str, Any]) -> str:
    if photo.get("kept"):
        return f"{photo['name']}: {text('verdict_kept')}"
    heading = text("verdict_dropped", heading=reason_heading(photo.get("reason")))
    detail = translate_message(photo.get("message") or "")  # the core's words, in English
    return f"{photo['name']}: {heading}" + (f" ({detail})" if detail else "")


def verdict_items(record: Any, thumbnails: list[str]) -> list[GalleryItem]:
    """Each photo as a thumbnail with kept/dropped and why, in upload order."""
    items = []
    for photo in record.progress.get("photos") or []:
        index = int(photo.get("index", len(items)))
        source = thumbnails[index] if index < len(thumbnails) else None
        items.append((thumbnail(source), verdict_caption(photo)))
    return items


def photos_summary(record: Any) -> str:
    """How many photos were kept, and each dropped one with its reason (captions under small
    thumbnails are cut short)."""
    photos = record.progress.get("photos") or []
    if not photos:
        return ""
    kept = sum(1 for p in photos if p.get("kept"))
    lines = [text("photos_summary", kept=kept, total=len(photos))]
    lines += [f"- {verdict_caption(p)}" for p in photos if not p.get("kept")]
    return "\n".join(lines)


def _user_root(record: Any) -> Path | None:
    """A finished training's user folder (where its LoRA is)."""
    lora = record.result.get("lora")
    return Path(lora).parent if lora else None


def _existing(path: str, record: Any, folder: str) -> Path | None:
    """`path`, or the same file in the user's `folder` once a finished training has moved its
    files from the job's staging folder into the user's."""
    if Path(path).is_file():
        return Path(path)
    root = _user_root(record)
    moved = root / folder / Path(path).name if root else None
    return moved if moved is not None and moved.is_file() else None


def validation_items(record: Any) -> list[GalleryItem]:
    """Every validation image that has arrived, captioned with its step and identity score."""
    items = []
    for validation in record.progress.get("validations") or []:
        scores = validation.get("scores") or []
        for index, image in enumerate(validation.get("images") or []):
            score = scores[index] if index < len(scores) else validation.get("mean_score") or 0.0
            found = _existing(image, record, "validation")
            if found is not None:
                items.append((thumbnail(found, 384), text("validation_caption",
                                                          step=validation["step"],
                                                          score=float(score))))
    return items


def train_result_markdown(record: Any | None) -> str:
    if record is None:
        return ""
    if record.state == "failed":
        return text("training_failed", message=plain_message(record.message))
    if record.state == "cancelled":
        return text("training_cancelled", message=plain_message(record.message))
    if record.state != "done":
        return ""
    result = record.result
    name = result.get("lora_name") or Path(result.get("lora", "")).stem
    lines = [text("lora_ready", lora_name=name), text("lora_file", path=result.get("lora", ""))]
    if result.get("lora_copies"):
        lines.append(text("lora_copies", paths=", ".join(f"`{p}`" for p in result["lora_copies"])))
    if result.get("selected"):
        chosen = text("chosen_checkpoints", steps=", ".join(str(s) for s in result["selected"]))
        if result.get("fusion_error") is not None and len(result["selected"]) > 1:
            chosen += text("fusion_error", error=float(result["fusion_error"]))
        lines.append(chosen)
    if result.get("score") is not None:
        lines.append(text("final_score", score=float(result["score"])))
    if not result.get("face_id"):
        lines.append(text("no_face_id"))
    return "\n\n".join(lines)


def face_id_image(record: Any | None) -> Image.Image | None:
    """The face-id image; without one (no validation image showed a face), the reference photo
    that generation then uses."""
    if record is None or record.state != "done":
        return None
    root = _user_root(record)
    candidates = [record.result.get("face_id"), root and root / "reference.png"]
    path = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    return thumbnail(path, 512) if path is not None else None


def result_item_count(record: Any) -> int:
    """How many items `result_items` gives for the record, without reading its image."""
    if record.state != "done" or not Path(record.result.get("image", "")).is_file():
        return 0
    return 1 + len(record.result.get("faces") or [])


def result_items(record: Any, number: int = 1) -> list[GalleryItem]:
    """A finished portrait, then each painted face's crop captioned with its identity score."""
    path = Path(record.result.get("image", ""))
    if record.state != "done" or not path.is_file():
        return []
    with Image.open(path) as opened:
        portrait = opened.convert("RGB")
    items = [(portrait, text("portrait_caption", number=number))]
    for index, face in enumerate(record.result.get("faces") or [], start=1):
        x, y, w, h = (float(v) for v in face["box"])
        pad = 0.25 * max(w, h)  # a little context around the face box
        crop = portrait.crop((int(max(0, x - pad)), int(max(0, y - pad)),
                              int(min(portrait.width, x + w + pad)),
                              int(min(portrait.height, y + h + pad))))
        if face.get("score") is None:
            caption = text("face_caption_unscored", number=index, user_id=face["user_id"])
        else:
            caption = text("face_caption", number=index, user_id=face["user_id"],
                           score=f"{float(face['score']):.3f}")
        items.append((crop, caption))
    return items


def generate_result_markdown(records: list[Any]) -> str:
    lines = []
    for record in records:
        if record.state == "failed":
            lines.append(text("generate_failed", message=plain_message(record.message)))
        elif record.state == "cancelled":
            lines.append(text("generate_cancelled", message=plain_message(record.message)))
    return "\n\n".join(lines)


# --- job list ---------------------------------------------------------------------------------


def jobs_html(records: list[Any], *, now: float | None = None) -> str:
    if not records:
        return f'<div class="easyphoto-jobs-empty">{html.escape(text("no_jobs"))}</div>'
    now = time.time() if now is None else now
    head = "".join(f"<th>{html.escape(text(k))}</th>" for k in (
        "job_column_id", "job_column_kind", "job_column_users", "job_column_state",
        "job_column_progress", "job_column_updated"))
    rows = []
    for record in records:
        progress = record.progress
        detail = stage_name(progress.get("stage")) if record.state == "running" else ""
        if record.state == "running" and progress.get("total"):
            detail += f" {progress.get('step', 0)}/{progress['total']}"
        percent = f"{100 * bar_fraction(record):.0f}%"
        cells = [record.id, text(f"kind_{record.kind}") if record.kind in ("train", "generate")
                 else record.kind, ", ".join(u or "-" for u in record.user_ids),
                 state_name(record.state), f"{percent} {detail}".strip(),
                 text("updated_ago", elapsed=format_seconds(now - record.updated))]
        rows.append(f'<tr data-job="{html.escape(record.id)}" data-state="{record.state}">'
                    + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (f'<table class="easyphoto-jobs"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')
