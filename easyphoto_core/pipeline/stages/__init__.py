"""The generation pipeline's non-diffusion stages (DESIGN.md §1.2), host-free numpy/OpenCV.

In pipeline order, for each template face paired with a user id:

1. `locate_faces` + `pair_faces_with_users` (template.py): faces left to right, user ids paired.
2. `crop_face` (crop.py): the face box x3, short side 512, sides multiples of 8.
3. `fuse_face` (fusion.py): the user's reference face blended in (before and after diffusion).
4. `replace_face` (fusion.py), `control_images` (controls.py, openpose.py): control inputs.
5. `face_masks` (masks.py): inpaint masks of both diffusions and the paste weight.
6. `color_shift` (color.py): LAB statistics toward the template face.
7. `paste_faces` + `seam_mask` (paste.py): back into the template.
8. `identity_score` (identity.py): the output face against the user, in [0, 1].

Every function takes images as H x W x 3 uint8 RGB and keeps the geometry conventions of
`easyphoto_core.faces.geometry`; options are keyword-only; results are dataclasses or arrays.
"""

from __future__ import annotations

from easyphoto_core.pipeline.stages.color import LabStats, color_shift, lab_stats
from easyphoto_core.pipeline.stages.controls import (
    ControlImages,
    canny_control,
    color_control,
    control_images,
    openpose_control,
    tile_control,
)
from easyphoto_core.pipeline.stages.crop import FaceCrop, crop_face, crop_output_size
from easyphoto_core.pipeline.stages.fusion import (
    FusionResult,
    alignment_matrix,
    fuse_face,
    replace_face,
)
from easyphoto_core.pipeline.stages.identity import (
    IdentityScore,
    identity_score,
    similarity_to_score,
)
from easyphoto_core.pipeline.stages.masks import (
    FaceMasks,
    eye_mask,
    face_masks,
    feather_inside,
    lips_mask,
)
from easyphoto_core.pipeline.stages.openpose import (
    OPENPOSE_BODY_PARTS,
    OPENPOSE_COLORS,
    OPENPOSE_LIMBS,
    OpenPosePerson,
    draw_openpose,
    openpose_person,
)
from easyphoto_core.pipeline.stages.paste import (
    PastePiece,
    PasteResult,
    paste_face,
    paste_faces,
    seam_mask,
)
from easyphoto_core.pipeline.stages.template import (
    MAX_USER_IDS,
    LocatedFace,
    TemplateFace,
    TemplateFaceError,
    check_user_count,
    locate_faces,
    locate_main_face,
    pair_faces_with_users,
)

__all__ = [
    "MAX_USER_IDS",
    "OPENPOSE_BODY_PARTS",
    "OPENPOSE_COLORS",
    "OPENPOSE_LIMBS",
    "ControlImages",
    "FaceCrop",
    "FaceMasks",
    "FusionResult",
    "IdentityScore",
    "LabStats",
    "LocatedFace",
    "OpenPosePerson",
    "PastePiece",
    "PasteResult",
    "TemplateFace",
    "TemplateFaceError",
    "alignment_matrix",
    "canny_control",
    "color_control",
    "color_shift",
    "control_images",
    "crop_face",
    "crop_output_size",
    "draw_openpose",
    "eye_mask",
    "face_masks",
    "feather_inside",
    "fuse_face",
    "identity_score",
    "lab_stats",
    "lips_mask",
    "locate_faces",
    "locate_main_face",
    "openpose_control",
    "openpose_person",
    "check_user_count",
    "pair_faces_with_users",
    "paste_face",
    "paste_faces",
    "replace_face",
    "seam_mask",
    "similarity_to_score",
    "tile_control",
]
