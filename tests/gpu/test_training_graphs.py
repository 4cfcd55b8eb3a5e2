"""The trainer's CUDA graphs on the tiny models (needs a CUDA GPU; skipped else).

Validation captures its model calls into the step graph's memory pool (engine.training_graph_pool):
these check that doing so changes neither the validation images nor the training that follows.
Run on a GPU machine: `python -m pytest tests/gpu`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SIZE = 64  # pixels: 8 x 8 latents, the tiny UNet's sample size


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from easyphoto_core.sd.tiny import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0).checkpoint


def _graph_loop(checkpoint, tmp_path):
    from easyphoto_core.params import TrainParams, parse_params
    from easyphoto_core.trainer_process.config import TrainerConfig
    from easyphoto_train.engine import CudaGraphStep, LoRATrainingLoop, encode_latents
    from easyphoto_train.setup import load_training_models

    torch.manual_seed(0)  # the same LoRA initialisation for every loop
    params = parse_params(TrainParams, {"resolution": 256, "rank": 8, "network_alpha": 8})
    job = TrainerConfig(user_id="gpu-test", base_model=checkpoint, dataset_dir=tmp_path,
                        output_dir=tmp_path / "out", params=params, device="cuda")
    models, components = load_training_models(job, device=torch.device("cuda"),
                                              dtype=torch.bfloat16)
    images = np.random.default_rng(0).integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    latents = encode_latents(components.vae, images, device=models.device, dtype=models.dtype)
    tokens = components.tokenizer("easyphoto_face", padding="max_length", max_length=77,
                                  return_tensors="pt").input_ids
    loop = LoRATrainingLoop(models, latents, tokens, params,
                            micro_batch=params.effective_batch_size, seed=0)
    return CudaGraphStep(loop), components


def _validation_image(components, graph_cache):
    from easyphoto_core.pipeline.sampler import InpaintSpec, LatentInpainter

    image = np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    inpainter = LatentInpainter(components, device=torch.device("cuda"), dtype=torch.bfloat16,
                                graph_cache=graph_cache)
    return inpainter(InpaintSpec(image=image, mask=mask, prompt="easyphoto_face", steps=8,
                                 denoise=0.7, seed=3))


def test_validation_in_the_step_pool_leaves_training_and_images_unchanged(tiny_checkpoint,
                                                                           tmp_path):
    from easyphoto_core.pipeline.sampler import GraphCache
    from easyphoto_train.engine import training_graph_pool

    plain, _ = _graph_loop(tiny_checkpoint, tmp_path / "plain")
    expected = [plain.step() for _ in range(6)]

    step, components = _graph_loop(tiny_checkpoint, tmp_path / "validated")
    losses = [step.step() for _ in range(3)]
    eager = _validation_image(components, None)
    graphs = GraphCache(pool=training_graph_pool())
    captured = [_validation_image(components, graphs) for _ in range(2)]  # capture, then replay
    losses += [step.step() for _ in range(3)]

    np.testing.assert_allclose(losses, expected, rtol=1e-3)
    assert all(np.isfinite(losses))
    for image in captured:
        assert np.abs(image.astype(int) - eager.astype(int)).max() <= 2


def test_host_staging_copies_into_reused_pinned_buffers():
    from easyphoto_train.checkpoints import HostStaging

    staging = HostStaging()
    weight = torch.randn(128, 320, device="cuda")
    first = staging.copy({"w": weight})["w"]
    assert first.is_pinned() and torch.equal(first, weight.cpu())
    weight.add_(1)
    second = staging.copy({"w": weight})["w"]
    assert second.data_ptr() == first.data_ptr()  # refilled, not reallocated
    assert torch.equal(second, weight.cpu())


def test_fused_adamw_matches_torch_fused_capturable_adamw_bit_for_bit_in_a_graph():
    """The step graph's optimizer (adamw.py) against the one it replaced, on CUDA: the same
    kernel after the same counter increment, so equal bits, eager and replayed."""
    from easyphoto_train.adamw import FusedAdamW

    def parameters():
        generator = torch.Generator(device="cuda").manual_seed(0)
        return [torch.nn.Parameter(torch.randn(shape, device="cuda", generator=generator))
                for shape in ((128, 64), (64, 128), (320,))]

    def groups(params):
        return [{"params": params[:2], "lr": 1e-3}, {"params": params[2:], "lr": 5e-4}]

    ours, theirs = parameters(), parameters()
    optimizers = [FusedAdamW(groups(ours), lr=1e-3, weight_decay=1e-2, eps=1e-8),
                  torch.optim.AdamW(groups(theirs), lr=1e-3, weight_decay=1e-2, eps=1e-8,
                                    capturable=True, fused=True)]
    grads = [torch.randn_like(p) for p in ours]
    for params, optimizer in zip((ours, theirs), optimizers, strict=True):
        for parameter, grad in zip(params, grads, strict=True):
            parameter.grad = grad.clone()
        optimizer.step()  # eager: creates the state
        graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            optimizer.step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            optimizer.step()
        for _ in range(3):
            graph.replay()
    torch.cuda.synchronize()
    for mine, reference in zip(ours, theirs, strict=True):
        assert torch.equal(mine, reference)
    assert float(optimizers[0].state[ours[0]]["step"]) == 5.0  # eager 2 + 3 replays
