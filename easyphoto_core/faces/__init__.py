"""Faces: Protocols, result types, geometry, and the backends behind them.

`FaceModels.load()` picks the best available backends (see chooser.py); everything else takes
the loaded objects as arguments. Geometry conventions are in geometry.py's docstring.
"""

from __future__ import annotations

from easyphoto_core.faces.base import (
    BodyPose,
    DenseLandmarks,
    FaceDetection,
    FaceDetector,
    FaceEmbedder,
    FaceModelError,
    LandmarkModel,
    PersonSegmenter,
    PoseEstimator,
    unit_vector,
)
from easyphoto_core.faces.chooser import FaceModels
from easyphoto_core.faces.geometry import (
    ARCFACE_TEMPLATE_112,
    apply_transform,
    clamp_box,
    crop_transform,
    dilate_mask,
    expand_box,
    frontal_score,
    similarity_transform,
    square_crop_box,
    warp_face,
)
from easyphoto_core.faces.identity import IdentityResult, majority_identity

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "BodyPose",
    "DenseLandmarks",
    "FaceDetection",
    "FaceDetector",
    "FaceEmbedder",
    "FaceModelError",
    "FaceModels",
    "IdentityResult",
    "LandmarkModel",
    "PersonSegmenter",
    "PoseEstimator",
    "apply_transform",
    "clamp_box",
    "crop_transform",
    "dilate_mask",
    "expand_box",
    "frontal_score",
    "majority_identity",
    "similarity_transform",
    "square_crop_box",
    "unit_vector",
    "warp_face",
]
