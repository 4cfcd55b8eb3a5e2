"""Fixtures shared by every test folder: the real test photos and model files in ../shared.

`shared/` sits beside the repository (CI clones it there too). Tests that need it are skipped,
with the path in the reason, when it is absent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

# pydantic 1.10 (AUTOMATIC1111's pin) registers a hypothesis plugin that crashes on recent
# hypothesis releases as soon as a model with constrained fields is defined (its compiled
# validators have no __code__). Nothing here uses the plugin: keep hypothesis from loading it.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seeded_global_rngs() -> None:
    """Every test starts from the same global random state, so none passes or fails by chance.

    Only libraries a test module has already imported are seeded: tests that need no torch
    don't pay for importing it.
    """
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)


def _shared_folder(*parts: str) -> Path:
    folder = SHARED.joinpath(*parts)
    if not folder.is_dir():
        pytest.skip(f"shared test data not found at {folder} (expected beside the repository)")
    return folder


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/testdata/faces: real photos (see its README for who is in which)."""
    return _shared_folder("testdata", "faces")


@pytest.fixture(scope="session")
def shared_models_dir() -> Path:
    """../shared/models: small model files (the YuNet detector)."""
    return _shared_folder("models")


@pytest.fixture(scope="session")
def shared_weight_paths(shared_models_dir: Path):
    """A weights registry layout whose models folder is ../shared/models (never the network)."""
    from easyphoto_core.weights import WeightPaths

    return WeightPaths.standalone(shared_models_dir, env={})


@pytest.fixture(scope="session")
def face_models(shared_weight_paths) -> Iterator[object]:
    """The best available face backends, loaded once per test session (offline)."""
    from easyphoto_core.faces import FaceModelError, FaceModels

    try:
        models = FaceModels.load(shared_weight_paths, offline=True)
    except FaceModelError as error:
        pytest.skip(f"no face backends available: {error}")
    yield models
    models.close()
