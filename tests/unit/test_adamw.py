"""FusedAdamW (the CUDA-graph step's optimizer) makes torch.optim.AdamW's updates, saves and
resumes through the checkpoint code, and never imports torch._dynamo. On CPU it runs torch's
CPU build of the same fused kernel (torch >= 2.4); tests/gpu holds it to torch's on CUDA."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from easyphoto_train.adamw import FusedAdamW
from easyphoto_train.checkpoints import (
    HostStaging,
    list_checkpoints,
    load_optimizer_state,
    snapshot_checkpoint,
)

if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 4):
    pytest.skip("this torch has no CPU fused AdamW kernel", allow_module_level=True)


def _parameters(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator))
            for shape in ((8, 4), (4, 8), (16,))]


def _groups(parameters):  # the trainer's two groups: UNet at lr, text encoder at lr / 2
    return [{"params": parameters[:2], "lr": 1e-2, "name": "unet"},
            {"params": parameters[2:], "lr": 5e-3, "name": "text_encoder"}]


_LORA = {"lora_unet_x.lora_down.weight": torch.zeros(2, 4),
         "lora_unet_x.lora_up.weight": torch.zeros(4, 2), "lora_unet_x.alpha": torch.tensor(2.0)}


def _train(optimizer, parameters, steps: int, *, seed: int = 7) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for parameter in parameters:
            parameter.grad = torch.randn(parameter.shape, generator=generator)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_its_steps_match_torch_adamw():
    ours, theirs = _parameters(0), _parameters(0)
    _train(FusedAdamW(_groups(ours), lr=1e-2, weight_decay=1e-2, eps=1e-8), ours, 5)
    _train(torch.optim.AdamW(_groups(theirs), lr=1e-2, weight_decay=1e-2, eps=1e-8), theirs, 5)
    for mine, reference, start in zip(ours, theirs, _parameters(0), strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(mine, start, atol=1e-3)  # it did move


def test_state_saved_and_resumed_continues_the_same_run(tmp_path):
    uninterrupted = _parameters(1)
    _train(FusedAdamW(_groups(uninterrupted), lr=1e-2), uninterrupted, 6)

    first = _parameters(1)
    names = {id(p): f"p{i}" for i, p in enumerate(first)}
    optimizer = FusedAdamW(_groups(first), lr=1e-2)
    _train(optimizer, first, 3)
    snapshot = snapshot_checkpoint(tmp_path, 3, _LORA, {},
                                   optimizer, names, HostStaging())
    snapshot.write()
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    names = {id(p): f"p{i}" for i, p in enumerate(resumed)}
    optimizer = FusedAdamW(_groups(resumed), lr=1e-2)
    load_optimizer_state(list_checkpoints(tmp_path)[-1], optimizer, names)
    assert float(optimizer.state[resumed[0]]["step"]) == 3.0
    # the remaining 3 steps with the gradients the uninterrupted run drew for steps 4-6
    generator = torch.Generator().manual_seed(7)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=generator) for p in resumed]
        if step < 3:
            continue
        for parameter, grad in zip(resumed, grads, strict=True):
            parameter.grad = grad
        optimizer.step()
    for mine, reference in zip(resumed, uninterrupted, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-7)


def test_a_group_across_dtypes_is_refused_by_name():
    parameters = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2).half())]
    with pytest.raises(ValueError, match="one device and dtype"):
        FusedAdamW([{"params": parameters}], lr=1e-3)


def test_it_does_not_import_torch_dynamo():
    """torch.optim's first use imports torch._dynamo (4.4 s of the H200 job's start-up)."""
    code = ("import sys, torch; from easyphoto_train.adamw import FusedAdamW\n"
            "p = torch.nn.Parameter(torch.ones(3)); o = FusedAdamW([{'params': [p]}], lr=0.1)\n"
            "p.grad = torch.ones(3); o.step(); o.zero_grad()\n"
            "assert float(p[0]) < 1.0\n"
            "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
