"""The core's two callback shapes, so every stage reports progress the same way.

`ProgressCallback(done, total, what)`: preprocessing (photos checked of all, the photo), a
registry download (bytes of all, the file) and the portrait pipeline (steps of its pass, the
pass: "face 1: first diffusion", "seam pass"). `StepCallback(done, total)`: the steps of one
diffusion pass, what a GenerationBackend reports to the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int, str], None]
StepCallback = Callable[[int, int], None]
