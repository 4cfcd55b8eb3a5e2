"""Every user-visible string of the EasyPhoto tab, in one place; `text()` and friends give them in
the current language through the one catalogue (easyphoto_core.i18n, English + 简体中文).

Field labels, defaults and bounds of the parameters are not here: they come from
`easyphoto_core.params` (one params model). What is here is the tab's own text: buttons, headings,
hints, stage names and the short words that head a photo's verdict.
"""

from __future__ import annotations

from easyphoto_core.i18n import LANGUAGES, gettext, translate_message

TEXT: dict[str, str] = {
    # tabs and headings
    "tab_train": "Train",
    "tab_generate": "Generate",
    "tab_jobs": "Jobs",
    "tab_about": "About",
    "advanced_train": "Advanced training options",
    "advanced_generate": "Advanced generation options",
    # train tab
    "user_id": "User id",
    "user_id_placeholder": "letters, digits, _ and -",
    "photos": "Photos (5-20 of one person)",
    "photo_thumbnails": "Photos",
    "clear_photos": "Clear photos",
    "start_training": "Start training",
    "cancel_training": "Cancel training",
    "overwrite_warning": "**{user_id}** is already trained: training again replaces its LoRA "
                         "and face-id image when the new run finishes.",
    "verdicts": "Photo check",
    "training_log": "Training log",
    "validation_images": "Validation images",
    "face_id_image": "Face-id image",
    "train_result": "Result",
    "no_photos": "Upload 5-20 photos of one person first.",
    "cannot_train": "Cannot start training: {error}",
    "photos_summary": "{kept} of {total} photos kept.",
    "verdict_kept": "kept",
    "verdict_dropped": "dropped: {heading}",
    "validation_caption": "step {step}: identity {score:.2f}",
    "lora_ready": "**LoRA:** `{lora_name}` (in the Lora tab as *{lora_name}*; prompt tag "
                  "`<lora:{lora_name}:0.9>`)",
    "lora_file": "**File:** `{path}`",
    "lora_copies": "**Copied to:** {paths}",
    "chosen_checkpoints": "**Chosen checkpoint(s):** {steps}",
    "fusion_error": " (fused; relative error {error:.3f})",
    "final_score": "**Identity score:** {score:.3f}",
    "no_face_id": "No validation image showed a face, so there is no face-id image: generation "
                  "uses the reference photo (shown) instead. More steps usually fix this.",
    "training_failed": "**Training failed:** {message}",
    "training_cancelled": "**Training cancelled:** {message}",
    # generate tab
    "templates": "Templates",
    "template": "Template",
    "add_template": "Add to templates",
    "template_added": "Added {name} to the templates.",
    "template_not_image": "{name} is not an image: nothing was added.",
    "batch": "Batch",
    "batch_templates": "Batch of templates (optional: each one is painted with the same user ids)",
    "faces_found": "{count} face(s) found, left to right: choose a user id for each face to paint.",
    "no_face_found": "No face found in this template: choose another one.",
    "choose_template": "Choose a template from the gallery or upload one.",
    "face_user_id": "Face {number}",
    "leave_face": "(leave this face)",
    "refresh_user_ids": "Refresh user ids",
    "generate": "Generate",
    "interrupt": "Interrupt",
    "load_settings": "Load settings from image",
    "results": "Results",
    "no_user_chosen": "Choose a user id for at least one face.",
    "cannot_generate": "Cannot generate: {error}",
    "portrait_caption": "portrait {number}",
    "face_caption": "face {number}: {user_id}, identity {score}",
    "face_caption_unscored": "face {number}: {user_id}, no face found in the output",
    "generate_failed": "**Generation failed:** {message}",
    "generate_cancelled": "**Generation interrupted:** {message}",
    # jobs
    "jobs": "Jobs (recent and running)",
    "refresh_jobs": "Refresh",
    "no_jobs": "No jobs yet.",
    "job_column_id": "Job",
    "job_column_kind": "Kind",
    "job_column_users": "User ids",
    "job_column_state": "State",
    "job_column_progress": "Progress",
    "job_column_updated": "Updated",
    "kind_train": "train",
    "kind_generate": "generate",
    # progress line
    "progress_waiting": "Waiting for the job to start…",
    "progress_step": "step {step}/{total}",
    "progress_loss": "loss {loss:.4f}",
    "progress_eta": "ETA {eta}",
    "progress_elapsed": "{elapsed} in this stage",
    "progress_idle": "No job running.",
    "passes_seen": "Passes: {passes}",
    "updated_ago": "{elapsed} ago",
}

# gradio's own words in our upload areas (gradio picks them by the browser's language, not the
# studio's): the host's localization file translates them in A1111 (gradio 3.41 draws "- or -"
# as three text nodes, "or" among them; gradio 4+ as one), ui.client_translations standalone.
GRADIO_TEXT: tuple[str, ...] = ("Drop File Here", "Drop Image Here", "Click to Upload", "or",
                                "- or -")

# Field labels come from easyphoto_core.params; these replace the ones that both tabs share, since
# the host's ui-config.json keys a widget by its label ("easyphoto/Seed/value" would be one key
# for Train's seed, 42 from 0, and Generate's, -1 = random).
FIELD_LABELS: dict[str, str] = {
    "train.seed": "Training seed",
}

# Job states as a user reads them.
STATES: dict[str, str] = {
    "queued": "queued",
    "running": "running",
    "interrupted": "interrupted (the studio stopped; resume it from the API)",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}

# Progress stages (the record's `progress.stage`) as a user reads them. Stages not listed
# (a generation pass is named by the pipeline: "face 1: first diffusion", "seam pass") are
# shown as they come.
STAGES: dict[str, str] = {
    "preprocess": "checking photos",
    "loading": "loading the model",
    "train": "training",
    "validation": "validating a checkpoint",
    "selecting": "choosing the checkpoint",
    "fusion": "fusing the best checkpoints",
    "saving": "saving",
    "done": "finished",
    "detecting": "finding faces",
    "painting": "preparing",
}

# The short words that head a dropped photo's verdict; the core's message follows them.
REASONS: dict[str, str] = {
    "not_an_image": "not an image",
    "unsupported_format": "unsupported image format",
    "too_large": "file too large",
    "too_many_pixels": "image too large",
    "truncated": "damaged image",
    "unreadable": "unreadable image",
    "duplicate": "the same photo twice",
    "too_many_photos": "too many photos",
    "no_face": "no face",
    "face_too_small": "face too small",
    "identity_outlier": "someone else",
}


def text(key: str, **values: object) -> str:
    """The string `key` in the current language (easyphoto_core.i18n), with `values` filled in."""
    return gettext(TEXT[key], **values)


def text_in_any_language(key: str) -> set[str]:
    """`key`'s text in every language: a value the page shows (the "(leave this face)" choice)
    may have been built in another language than the current one (the setting changed)."""
    return {gettext(TEXT[key], language) for language in LANGUAGES}


def state_name(state: str) -> str:
    return gettext(STATES.get(state, state))


def stage_name(stage: str | None) -> str:
    """A stage, or a generation pass as the pipeline names it ("face 1: first diffusion")."""
    return translate_message(STAGES.get(stage or "", stage or ""))


def reason_heading(reason: str | None) -> str:
    return gettext(REASONS.get(reason or "", "not usable"))
