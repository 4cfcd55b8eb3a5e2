"""Box checks the face and preprocess tests assert with."""

from __future__ import annotations

import numpy as np


def box_contains(outer: np.ndarray, inner: np.ndarray, *, tolerance: float = 1e-6) -> bool:
    return bool(
        outer[0] <= inner[0] + tolerance and outer[1] <= inner[1] + tolerance
        and outer[2] >= inner[2] - tolerance and outer[3] >= inner[3] - tolerance
    )


def points_in_box(points: np.ndarray, box: np.ndarray) -> bool:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return bool(
        np.all(pts[:, 0] >= box[0]) and np.all(pts[:, 0] <= box[2])
        and np.all(pts[:, 1] >= box[1]) and np.all(pts[:, 1] <= box[3])
    )
