"""The portrait pipeline: paint trained users into the faces of a template photo.

Read it like a diffusers pipeline: components are passed in (a GenerationBackend, the face
models, the workspace), `check_inputs` refuses bad requests with a message saying what to do,
and `__call__` runs the numbered steps of DESIGN.md §1.2 for each face.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from easyphoto_core.callbacks import ProgressCallback
from easyphoto_core.params import GenerateParams
from easyphoto_core.pipeline import stages
from easyphoto_core.pipeline.backend import (
    ControlSpec,
    GenerationBackend,
    InpaintRequest,
    LoraRef,
    MissingModelError,
)
from easyphoto_core.pipeline.sampler import Interrupted
from easyphoto_core.workspace import Workspace

if TYPE_CHECKING:  # the face stack loads its backends lazily; only the type is needed here
    from easyphoto_core.faces import FaceModels

# Context kept around a light pass's region: the crop the model sees reaches this far past it
# (the seam band of two faces in a 1024 px group photo is a few percent of the pixels; inpainting
# only its box instead of the whole photo is what makes the seam pass cheap).
LIGHT_PASS_MARGIN = 32
BACKGROUND_RESTORE_STEPS = 20
# background faces smaller than this x the largest face do not take a user's slot
MIN_RELATIVE_FACE_SIZE = 0.3
# Extra-network tags a host would act on: a prompt must not pick LoRAs (or other networks); the
# only LoRAs that go in are the chosen user ids' own.
EXTRA_NETWORK_TAG = re.compile(r"<\s*(lora|lyco|lycoris|hypernet|hypernetwork|embedding|ti)"
                               r"\s*:[^>]*>?", re.IGNORECASE)


def check_prompt_tags(params: GenerateParams) -> None:
    """Refuse extra-network tags (<lora:...>, <lyco:...>, <hypernet:...>) in the prompts."""
    for name in ("prompt", "negative_prompt"):
        found = EXTRA_NETWORK_TAG.search(getattr(params, name, "") or "")
        if found:
            label = "negative prompt" if name == "negative_prompt" else "prompt"
            raise ValueError(f"The {label} contains the tag {found.group(0)[:60]!r}: prompts "
                             "cannot add LoRAs or other networks; EasyPhoto adds each chosen "
                             "user's own LoRA. Remove the tag.")


class UnknownUserError(MissingModelError):
    """A user id with no trained LoRA in the workspace."""


@dataclass(frozen=True)
class UserAssets:
    user_id: str
    lora: LoraRef
    reference: np.ndarray  # the reference photo (face fusion source)
    reference_face: stages.LocatedFace
    face_id: np.ndarray  # the best validation image (replace image source)
    face_id_face: stages.LocatedFace
    embeddings: np.ndarray | None  # the training faces, for scoring


@dataclass(frozen=True)
class FaceResult:
    user_id: str
    box: tuple[int, int, int, int]  # the face's crop box in the template
    identity: stages.IdentityScore | None  # None when no face is found in the output


@dataclass
class PortraitResult:
    image: np.ndarray  # the template's size
    faces: list[FaceResult]
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. a face-id image replaced by a fallback
    seed: int | None = None  # the seed used (params.seed, or the random one drawn): infotext


class PortraitPipeline:
    def __init__(self, *, backend: GenerationBackend, face_models: FaceModels,
                 workspace: Workspace) -> None:
        self.backend, self.face_models, self.workspace = backend, face_models, workspace

    # --- inputs -----------------------------------------------------------------------------

    def check_inputs(self, template: np.ndarray, user_ids: Sequence[str],
                     params: GenerateParams) -> None:
        """Refuse a request that cannot run, with a message saying what to do. Cheap and without
        side effects (it runs on the request thread, inside A1111 the WebUI's event loop): the
        image's type, the prompts, the ids, and the model files by name and header. Finding the
        template's faces is the job's first step."""
        if template.ndim != 3 or template.shape[2] != 3 or template.dtype != np.uint8:
            raise ValueError("the template must be an RGB image (H x W x 3, uint8)")
        check_prompt_tags(params)
        chosen = [user_id for user_id in user_ids if user_id is not None]  # None: leave a face
        stages.check_user_count(user_ids)
        for user_id in chosen:
            files = self.workspace.user(user_id)  # validates the id
            if not files.lora_file.is_file():
                raise UnknownUserError(
                    f"user id {user_id!r} has no trained LoRA in {self.workspace.root}: train "
                    f"it first (expected {files.lora_file}).")
            self.backend.check_lora(self.lora_ref(user_id, params))
        self.backend.check_controls(self.control_kinds(params))

    def pair_faces(self, template: np.ndarray,
                   user_ids: Sequence[str]) -> list[stages.TemplateFace]:
        """The template's faces left to right, paired with the user ids (None leaves a face)."""
        faces = stages.locate_faces(template, detector=self.face_models.detector,
                                    landmarks=self.face_models.landmarks,
                                    min_relative_size=MIN_RELATIVE_FACE_SIZE)
        return stages.pair_faces_with_users(faces, list(user_ids))

    @staticmethod
    def control_kinds(params: GenerateParams) -> set[str]:
        kinds = {"canny", "openpose", "tile"}
        return kinds | {"color"} if params.color_control else kinds

    def lora_ref(self, user_id: str, params: GenerateParams) -> LoraRef:
        files = self.workspace.user(user_id)
        return LoraRef(files.lora_name, files.lora_file, params.lora_weight)

    def load_user(self, user_id: str, params: GenerateParams,
                  notes: list[str] | None = None) -> UserAssets:
        files = self.workspace.user(user_id)
        reference = _read_rgb(files.reference_photo)
        embeddings_file = files.dataset.embeddings
        locate = {"detector": self.face_models.detector, "landmarks": self.face_models.landmarks}
        reference_face = stages.locate_main_face(reference, what=f"{user_id}'s reference photo",
                                                 **locate)
        face_id, face_id_face, note = self._face_id(files, reference, reference_face, locate)
        if note and notes is not None:
            notes.append(note)
        return UserAssets(
            user_id=user_id, lora=self.lora_ref(user_id, params), reference=reference,
            reference_face=reference_face, face_id=face_id, face_id_face=face_id_face,
            embeddings=np.load(embeddings_file) if embeddings_file.is_file() else None)

    @staticmethod
    def _face_id(files: Any, reference: np.ndarray, reference_face: stages.LocatedFace,
                 locate: dict[str, Any]) -> tuple[np.ndarray, stages.LocatedFace, str | None]:
        """The face-id image and its face; the reference photo (with a note saying so) when the
        face-id image is missing, unreadable or shows no face, so a trained user can always be
        painted."""
        if not files.face_id_image.is_file():
            return reference, reference_face, None  # trained without validation: by design
        try:
            face_id = _read_rgb(files.face_id_image)
            return face_id, stages.locate_main_face(face_id, what="face-id image", **locate), None
        except (OSError, ValueError) as error:  # TemplateFaceError is a ValueError
            return reference, reference_face, (
                f"{files.user_id}: the face-id image could not be used ({error}); the reference "
                "photo was used for the pose instead")

    # --- the pipeline -------------------------------------------------------------------------

    def __call__(self, template: np.ndarray, user_ids: Sequence[str], params: GenerateParams, *,
                 callback: ProgressCallback | None = None,
                 interrupt: Callable[[], bool] | None = None,
                 return_intermediates: bool = False) -> PortraitResult:
        run = _Run(self, params, callback, interrupt, return_intermediates)
        try:
            return self._paint(run, template, user_ids, params)
        finally:
            self.backend.release()  # the base model is shared with other jobs: no LoRA left on

    def _paint(self, run: _Run, template: np.ndarray, user_ids: Sequence[str],
               params: GenerateParams) -> PortraitResult:
        # 1. every file checked up front; the faces left to right, paired with the user ids
        self.check_inputs(template, user_ids, params)
        paired = self.pair_faces(template, user_ids)
        notes: list[str] = []
        users = {uid: self.load_user(uid, params, notes) for uid in dict.fromkeys(user_ids)
                 if uid is not None}
        pieces, faces = [], []
        for number, slot in enumerate(p for p in paired if p.user_id is not None):
            # 2.-8. crop, fuse, controls, two diffusions, colour: one painted crop per face
            crop, image, weight = run.paint_face(template, slot.face, users[slot.user_id],
                                                 seed=run.seed + number, number=number)
            pieces.append(stages.PastePiece(image=image, crop=crop, weight=weight))
            faces.append((slot.user_id, crop))
        # 9. paste back with feathered masks; a light seam pass when several people meet
        pasted = stages.paste_faces(template, pieces)
        run.note("paste_weight", pasted.weight)
        result = pasted.image
        if len(pieces) > 1 and params.seam_denoising_strength > 0:
            result = run.seam_pass(pasted)
        if params.background_restore:  # a light pass over everything but the faces
            result = run.light_pass(result, pasted.weight <= 0, "background restore",
                                    steps=BACKGROUND_RESTORE_STEPS,
                                    denoise=params.background_restore_denoising)
        # 10. how much each output face looks like its user
        scored = [FaceResult(uid, crop.box, self._score(result, crop, users[uid]))
                  for uid, crop in faces]
        return PortraitResult(result, scored, run.intermediates, notes, seed=run.seed)

    def _score(self, image: np.ndarray, crop: stages.FaceCrop,
               user: UserAssets) -> stages.IdentityScore | None:
        if user.embeddings is None:
            return None
        template_face = crop.face.transformed(crop.inverse_matrix)
        try:
            return stages.identity_score(image, user.embeddings, embedder=self.face_models.embedder,
                                         face=template_face.detection,
                                         detector=self.face_models.detector)
        except ValueError:
            return None


class _Run:
    """State of one __call__: params, seed, callbacks and the intermediates kept."""

    def __init__(self, pipeline: PortraitPipeline, params: GenerateParams,
                 callback: ProgressCallback | None, interrupt: Callable[[], bool] | None,
                 keep: bool) -> None:
        self.pipeline, self.params = pipeline, params
        self.callback, self.interrupt, self.keep = callback, interrupt, keep
        self.seed = params.seed if params.seed >= 0 else int(np.random.default_rng().integers(2**31))
        self.intermediates: dict[str, np.ndarray] = {}

    def note(self, name: str, image: np.ndarray) -> None:
        if self.keep:
            self.intermediates[name] = image

    def check_interrupt(self, stage: str) -> None:
        if self.interrupt is not None and self.interrupt():
            raise Interrupted(f"interrupted before {stage}")

    def inpaint(self, stage: str, **request: Any) -> np.ndarray:
        self.check_interrupt(stage)

        def report(done: int, total: int) -> None:
            if self.callback is not None:
                self.callback(done, total, stage)

        params = self.params
        return self.pipeline.backend.inpaint(
            InpaintRequest(prompt=params.prompt, negative_prompt=params.negative_prompt,
                           cfg_scale=params.cfg_scale, **request),
            callback=report, interrupt=self.interrupt)

    def paint_face(self, template: np.ndarray, face: stages.LocatedFace, user: UserAssets, *,
                   seed: int, number: int) -> tuple[stages.FaceCrop, np.ndarray, np.ndarray]:
        params = self.params
        # 2. the face's neighbourhood, short side = first diffusion resolution
        crop = stages.crop_face(template, face, short_side=params.first_diffusion_resolution)
        masks = stages.face_masks(crop.image.shape[:2], crop.face, dilation=params.mask_dilation)
        # 3. face fusion before: the user's reference face blended into the template face
        fused = crop.image
        if params.apply_face_fusion_before:
            fused = stages.fuse_face(crop.image, crop.face, user.reference, user.reference_face,
                                     ratio=params.face_fusion_ratio_before).image
        # 4.-5. the replace image (face-id face on the template) and the control images
        replace = stages.replace_face(crop.image, crop.face, user.face_id, user.face_id_face)
        controls = stages.control_images(fused, replace.source_face, body=self._body(replace),
                                         with_color=params.color_control)
        # 6. first diffusion: the dilated face mask, the user's LoRA, canny + openpose (+ colour)
        first = self.inpaint(f"face {number + 1}: first diffusion", image=fused, mask=masks.face,
                             steps=params.first_diffusion_steps,
                             denoise=params.first_denoising_strength, seed=seed,
                             controls=self._first_controls(controls), lora=user.lora)
        # 7. colour toward the template face, then face fusion after
        if params.color_shift_middle:
            first = stages.color_shift(first, crop.image, mask=masks.face)
        if params.apply_face_fusion_after:
            first = stages.fuse_face(first, crop.face, user.reference, user.reference_face,
                                     ratio=params.face_fusion_ratio_after).image
        # 8. second diffusion: the ring around the face + eyes and lips, canny + tile
        second, weight = self._second_diffusion(first, crop, masks, user, seed=seed,
                                                number=number)
        self._keep(number, crop=crop.image, fused=fused, replace=replace.image,
                   canny=controls.canny, openpose=controls.openpose, mask=masks.face,
                   first=first, second=second)
        return crop, second, weight

    def _body(self, replace: stages.FusionResult) -> Any:
        pose = getattr(self.pipeline.face_models, "pose", None)
        return pose.pose(replace.image) if pose is not None else None

    def _first_controls(self, controls: stages.ControlImages) -> tuple[ControlSpec, ...]:
        params = self.params
        chosen = [ControlSpec("canny", controls.canny, params.canny_weight),
                  ControlSpec("openpose", controls.openpose, params.openpose_weight)]
        if controls.color is not None:
            chosen.append(ControlSpec("color", controls.color, params.color_weight))
        return tuple(chosen)

    def _second_diffusion(self, image: np.ndarray, crop: stages.FaceCrop,
                          masks: stages.FaceMasks, user: UserAssets, *, seed: int,
                          number: int) -> tuple[np.ndarray, np.ndarray]:
        params = self.params
        mask = np.maximum.reduce([masks.ring, masks.eyes, masks.lips])
        reference, weight = crop.image, masks.paste_weight
        if params.high_resolution:  # the second pass at a larger size, pasted back scaled
            size = _multiple_of_8(image.shape[1] * params.high_resolution_scale,
                                  image.shape[0] * params.high_resolution_scale)
            image, reference = _resize(image, size), _resize(crop.image, size)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            weight = cv2.resize(weight, size, interpolation=cv2.INTER_LINEAR)
        controls = (ControlSpec("canny", stages.canny_control(image), params.second_canny_weight),
                    ControlSpec("tile", stages.tile_control(image), params.tile_weight))
        second = self.inpaint(f"face {number + 1}: second diffusion", image=image, mask=mask,
                              steps=params.second_diffusion_steps,
                              denoise=params.second_denoising_strength, seed=seed + 1000,
                              controls=controls, lora=user.lora)
        if params.color_shift_last:
            face_mask = cv2.resize(masks.face, (image.shape[1], image.shape[0]),
                                   interpolation=cv2.INTER_NEAREST)
            second = stages.color_shift(second, reference, mask=face_mask)
        return second, weight

    def _keep(self, number: int, **images: np.ndarray) -> None:
        for name, image in images.items():
            self.note(f"face{number + 1}_{name}", image)

    def seam_pass(self, pasted: stages.PasteResult) -> np.ndarray:
        """Inpaint the band where pasted faces meet the photo, lightly, keeping all else."""
        band = stages.seam_mask(pasted.weight) > 0
        self.note("seam_mask", band.astype(np.uint8) * 255)
        return self.light_pass(pasted.image, band, "seam pass", steps=self.params.seam_steps,
                               denoise=self.params.seam_denoising_strength)

    def light_pass(self, image: np.ndarray, region: np.ndarray, stage: str, *, steps: int,
                   denoise: float) -> np.ndarray:
        """A low-denoise inpaint of `region` (bool), canny-guided, no LoRA, on the box around
        `region` plus a margin of context; pixels outside `region` are returned unchanged."""
        if not region.any():
            return image
        x0, y0, x1, y1 = region_box(region, margin=LIGHT_PASS_MARGIN)
        crop = _pad_to_multiple_of_8(image[y0:y1, x0:x1])
        inside = region[y0:y1, x0:x1]
        mask = _pad_to_multiple_of_8(inside.astype(np.uint8)[..., None] * 255)[..., 0]
        self.note(f"{stage.replace(' ', '_')}_crop", crop)
        repaired = self.inpaint(stage, image=crop, mask=mask, steps=steps, denoise=denoise,
                                seed=self.seed + 2000,
                                controls=(ControlSpec("canny", stages.canny_control(crop),
                                                      self.params.second_canny_weight),))
        out = image.copy()
        out[y0:y1, x0:x1] = np.where(inside[..., None], repaired[:y1 - y0, :x1 - x0],
                                     image[y0:y1, x0:x1])
        return out


def region_box(region: np.ndarray, *, margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the bounding box of a non-empty bool `region`, grown by `margin` pixels
    and clipped to the image."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    height, width = region.shape
    return (max(0, int(cols[0]) - margin), max(0, int(rows[0]) - margin),
            min(width, int(cols[-1]) + 1 + margin), min(height, int(rows[-1]) + 1 + margin))


def _read_rgb(path: Any) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _multiple_of_8(width: float, height: float) -> tuple[int, int]:
    return max(8, int(round(width / 8)) * 8), max(8, int(round(height / 8)) * 8)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)


def _pad_to_multiple_of_8(image: np.ndarray) -> np.ndarray:
    """Edge-padded at the bottom/right so both sides are multiples of 8 (crop back after)."""
    height, width = image.shape[:2]
    return np.pad(image, ((0, -height % 8), (0, -width % 8), (0, 0)), mode="edge")
