"""The latent inpainter on the tiny random-weight models (real loaders, real maths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from easyphoto_core.pipeline import sampler
from easyphoto_core.pipeline.sampler import (
    ControlInput,
    GraphCache,
    InpaintSpec,
    Interrupted,
    LatentInpainter,
)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from easyphoto_core.sd.loading import load_controlnet, load_sd15_checkpoint
    from easyphoto_core.sd.tiny import write_tiny_models

    files = write_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)
    components = load_sd15_checkpoint(files.checkpoint)
    canny = load_controlnet(files.canny)
    return components, canny


def make_spec(**overrides) -> InpaintSpec:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    values = {"image": image, "mask": mask, "prompt": "easyphoto_face", "steps": 6,
              "denoise": 0.5, "seed": 3}
    return InpaintSpec(**{**values, **overrides})


def test_only_the_masked_region_changes(parts):
    components, _ = parts
    spec = make_spec()
    result = LatentInpainter(components, device=torch.device("cpu"), dtype=torch.float32)(spec)
    outside = spec.mask == 0
    assert result.shape == spec.image.shape
    assert np.array_equal(result[outside], spec.image[outside])
    assert np.abs(result[~outside].astype(int) - spec.image[~outside]).mean() > 1


def test_same_seed_same_image_other_seed_other_image(parts):
    components, _ = parts
    inpaint = LatentInpainter(components, device=torch.device("cpu"), dtype=torch.float32)
    first, again, other = (inpaint(make_spec(seed=s)) for s in (3, 3, 4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_controlnet_and_callback_take_effect(parts):
    components, canny = parts
    inpaint = LatentInpainter(components, device=torch.device("cpu"), dtype=torch.float32)
    control = np.zeros((64, 96, 3), np.uint8)
    control[::4] = 255
    steps_seen = []
    plain = inpaint(make_spec())
    guided = inpaint(make_spec(controls=(ControlInput(canny, control, 1.0),)),
                     callback=lambda done, total: steps_seen.append((done, total)))
    assert not np.array_equal(plain, guided)
    assert steps_seen == [(1, 3), (2, 3), (3, 3)]  # 6 steps x denoise 0.5


def test_control_embedded_once_per_pass_predicts_what_the_controlnet_does_on_the_image(parts):
    """prepare_control lifts the ControlNet's conditioning embedding out of the steps: the
    noise prediction is the one the ControlNet makes from the control image itself."""
    components, canny = parts
    inpaint = LatentInpainter(components, device=torch.device("cpu"), dtype=torch.float32)
    control = np.random.default_rng(2).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    embedded = inpaint.prepare_control(control, canny)
    image = inpaint.prepare_control(control)  # no ControlNet named: the image, once per half
    assert embedded.shape[:2] == (1, canny.config.block_out_channels[0])
    assert image.shape == (2, 3, 64, 96)
    scheduler = inpaint.make_scheduler()
    timestep = inpaint.prepare_timesteps(scheduler, 6, 0.5)[0]
    latents = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    embeds = inpaint.encode_prompts("easyphoto_face", "")
    predictions = [inpaint.predict_noise(scheduler, latents, timestep, embeds,
                                         controls=[(canny, condition, 0.8)], cfg_scale=7.0)
                   for condition in (embedded, image)]
    torch.testing.assert_close(predictions[0], predictions[1], rtol=1e-5, atol=1e-5)
    assert canny.controlnet_cond_embedding is not sampler._ALREADY_EMBEDDED  # put back
    unguided = inpaint.predict_noise(scheduler, latents, timestep, embeds, controls=[],
                                     cfg_scale=7.0)
    assert (predictions[0] - unguided).abs().max() > 1e-3  # the control does act


def test_interrupt_flag_stops_between_steps(parts):
    components, _ = parts
    inpaint = LatentInpainter(components, device=torch.device("cpu"), dtype=torch.float32)
    with pytest.raises(Interrupted, match="step 0"):
        inpaint(make_spec(), interrupt=lambda: True)


def test_bad_sizes_are_refused(parts):
    components, _ = parts
    inpaint = LatentInpainter(components, device=torch.device("cpu"), dtype=torch.float32)
    with pytest.raises(ValueError, match="multiples of 8"):
        inpaint(make_spec(image=np.zeros((60, 96, 3), np.uint8), mask=np.zeros((60, 96))))


def test_graph_cache_keeps_the_most_recently_used_graphs_up_to_its_limit(monkeypatch):
    """Graphs are keyed by shapes and control weights: without a bound a long-running studio
    would keep one per size and weight it ever saw. (Capturing needs CUDA; the stand-in records
    what was captured.)"""
    captured = []

    class StandIn:
        def __init__(self, call, example, *, pool=None):
            captured.append(example["key"])

    monkeypatch.setattr(sampler, "CapturedCall", StandIn)
    cache = GraphCache(limit=3)
    for key in ("a", "b", "c", "a", "d", "e"):  # "a" used again before "d" and "e" arrive
        cache.call((key,), lambda **_: None, {"key": key})
    assert list(cache.graphs) == [("a",), ("d",), ("e",)]
    assert captured == ["a", "b", "c", "d", "e"]  # "a" replayed, not captured twice
    assert GraphCache().limit == sampler.GRAPH_CACHE_LIMIT
