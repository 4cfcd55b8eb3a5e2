"""The ControlNets beside the UNet's down path (sampler._beside_the_down_path) on CUDA: the same
images as one stream, eager and replayed from a CUDA graph (needs a CUDA GPU; skipped else)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from easyphoto_core.pipeline import sampler
from easyphoto_core.pipeline.sampler import ControlInput, GraphCache, InpaintSpec, LatentInpainter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from easyphoto_core.sd.loading import load_controlnet, load_sd15_checkpoint
    from easyphoto_core.sd.tiny import write_tiny_models

    files = write_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)
    components = load_sd15_checkpoint(files.checkpoint, device=torch.device("cuda"),
                                      dtype=torch.float16)
    nets = [load_controlnet(path).to("cuda", torch.float16) for path in (files.canny,
                                                                        files.openpose)]
    return components, nets


def _spec(nets) -> InpaintSpec:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    controls = tuple(ControlInput(controlnet=net, image=rng.integers(0, 255, (64, 64, 3),
                                                                     dtype=np.uint8),
                                  weight=weight) for net, weight in zip(nets, (0.5, 0.7),
                                                                     strict=True))
    return InpaintSpec(image=image, mask=mask, prompt="easyphoto_face", steps=6, denoise=0.6,
                       seed=3, controls=controls)


def test_controlnets_on_side_streams_paint_what_one_stream_paints(parts, monkeypatch):
    """Eager against eager and graph replay against graph replay (replays and eager calls may
    differ in the last bit, streams or not: tests/gpu/test_training_graphs.py)."""
    components, nets = parts
    spec = _spec(nets)
    calls = []
    overlapped = sampler._beside_the_down_path
    monkeypatch.setattr(sampler, "_beside_the_down_path",
                        lambda *a, **k: calls.append(1) or overlapped(*a, **k))

    def paint(graphs):
        inpaint = LatentInpainter(components, device=torch.device("cuda"), dtype=torch.float16,
                                  graph_cache=graphs)
        return inpaint(spec), inpaint(spec)  # with graphs: captured, then replayed

    side_streams = {"eager": paint(None), "graphs": paint(GraphCache())}
    assert calls  # the side streams were used
    monkeypatch.setattr(sampler, "_reads_residuals_after", lambda unet: False)
    calls.clear()
    one_stream = {"eager": paint(None), "graphs": paint(GraphCache())}
    assert not calls
    for kind in ("eager", "graphs"):
        for ours, reference in zip(side_streams[kind], one_stream[kind], strict=True):
            assert np.array_equal(ours, reference), kind
    painted = side_streams["graphs"][1]
    assert np.abs(painted.astype(int) - spec.image.astype(int))[spec.mask > 0].mean() > 1
