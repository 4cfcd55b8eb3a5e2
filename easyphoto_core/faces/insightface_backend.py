"""insightface's ArcFace identity embedding (`buffalo_l` / `antelopev2` packs) on onnxruntime.

Full quality, optional: the packs are not redistributable for commercial use, so the user puts
one in the insightface folder (A1111: `models/insightface/models/<pack>/`) and onnxruntime must be
installed. The `insightface` Python package itself is not needed: the recognition model is run
directly, on faces aligned with our own similarity warp to ArcFace's template, and any detector's
5 landmarks (YuNet's are in the same order) feed it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from easyphoto_core.faces.base import FaceDetection, FaceModelError, unit_vector
from easyphoto_core.faces.geometry import warp_face

# pack name -> its recognition model file (the packs' other files are detectors and attributes)
RECOGNITION_FILES = {"buffalo_l": "w600k_r50.onnx", "antelopev2": "glintr100.onnx"}
# Cosine similarity above which insightface's examples call two faces the same person.
ARCFACE_SAME_PERSON_SIMILARITY = 0.3


def find_insightface_pack(
    insightface_dir: str | os.PathLike[str], packs: tuple[str, ...] = ("antelopev2", "buffalo_l")
) -> Path:
    """The recognition model of the first pack found under `insightface_dir` (either directly or
    in its `models/` subfolder, insightface's own layout); FaceModelError naming where we looked."""
    root = Path(insightface_dir)
    looked = []
    for pack in packs:
        for folder in (root / "models" / pack, root / pack):
            candidate = folder / RECOGNITION_FILES[pack]
            looked.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise FaceModelError(
        "no insightface pack found (optional; non-commercial licence): looked for "
        + ", ".join(looked)
    )


def align_for_arcface(image: np.ndarray, face: FaceDetection) -> np.ndarray:
    """The 112 x 112 RGB face ArcFace expects, warped by the face's 5 landmarks."""
    aligned, _ = warp_face(image, face.landmarks5, output_size=(112, 112))
    return aligned


class ArcFaceEmbedder:
    """`FaceEmbedder` on an insightface ArcFace ONNX model (512-d)."""

    same_person_similarity = ARCFACE_SAME_PERSON_SIMILARITY

    def __init__(self, model_path: str | os.PathLike[str], *, threads: int = 0) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise FaceModelError(
                f"onnxruntime is not installed (needed for the insightface pack): {error}"
            ) from error
        path = Path(model_path)
        if not path.is_file():
            raise FaceModelError(f"insightface recognition model not found: {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self._input_name = self._session.get_inputs()[0].name
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.name = f"insightface_{path.parent.name}_{path.stem}"

    def embed(self, image: np.ndarray, face: FaceDetection) -> np.ndarray:
        aligned = align_for_arcface(image, face).astype(np.float32)
        # ArcFace takes RGB scaled to [-1, 1], NCHW
        blob = ((aligned - 127.5) / 127.5).transpose(2, 0, 1)[None]
        (output,) = self._session.run(None, {self._input_name: blob})
        return unit_vector(output[0])
