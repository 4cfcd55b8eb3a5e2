"""AdamW as one fused kernel per parameter group, for the CUDA-graph step, without torch.optim.

Why not `torch.optim.AdamW(fused=True, capturable=True)`: its first use imports torch._dynamo
(every torch.optim method is wrapped in `torch._disable_dynamo`, which imports it on first call).
On the H200 machine it took 4.1 s of the trainer's start-up (`bench/train_gpu.py`, the job's
`LoRATrainingLoop` part: 4.06 s with torch.optim's AdamW, 0.00 s with this; torch 2.11). The
update is the same kernel torch.optim's fused AdamW runs (`torch._fused_adamw_`, in torch since 2.0), after the same
step-counter increment, so the bits match (tests/unit/test_adamw.py, tests/gpu). The state
dict per parameter has torch.optim's keys and types ("step" a float32 scalar on the
parameter's device, "exp_avg", "exp_avg_sq"), so checkpoints.py saves and resumes either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch


class FusedAdamW:
    """`param_groups` (lists of dicts with "params", "lr", "betas", "eps", "weight_decay") and
    `state` like torch.optim's; `step()` and `zero_grad()`. Every parameter of a group must be on
    one device in one dtype (the fused kernel's rule; the LoRA factors are fp32 on the GPU)."""

    def __init__(self, groups: Iterable[Mapping[str, Any]], *, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "capturable": True}  # checkpoints.py: step counters live on the device
        self.param_groups = [{**defaults, **group, "params": list(group["params"])}
                             for group in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for group in self.param_groups:
            kinds = {(p.device, p.dtype) for p in group["params"]}
            if len(kinds) > 1:
                raise ValueError(f"one fused AdamW group needs one device and dtype, got {kinds}")

    def initialise_state(self) -> None:
        """The state a first step creates (zero moments, step 0 on the device) for every
        parameter that has none, so that a captured step allocates no state."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if not self.state.get(parameter):
                    self.state[parameter] = {
                        "step": torch.zeros((), dtype=torch.float32, device=parameter.device),
                        "exp_avg": torch.zeros_like(parameter,
                                                    memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(parameter,
                                                       memory_format=torch.preserve_format),
                    }

    @torch.no_grad()
    def step(self) -> None:
        self.initialise_state()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False,
                                lr=group["lr"], beta1=beta1, beta2=beta2,
                                weight_decay=group["weight_decay"], eps=group["eps"],
                                maximize=False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for parameter in group["params"]:
                if set_to_none:
                    parameter.grad = None
                elif parameter.grad is not None:
                    parameter.grad.zero_()
