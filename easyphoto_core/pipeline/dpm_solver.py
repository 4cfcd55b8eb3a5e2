"""DPM++ 2M Karras, A1111's usual sampler, without diffusers.

Why this exists: the training subprocess samples validation images with it, and importing
diffusers' scheduler module costs 2-3 s on top of torch at the trainer's start-up (measured with
`python -X importtime` on this CPU machine: 2.0-2.3 s over torch's own 1.7 s, warm file cache).

What it is: diffusers' DPMSolverMultistepScheduler(use_karras_sigmas=True,
algorithm_type="dpmsolver++", solver_order=2) with that class's defaults otherwise (midpoint
solver, lower_order_final, final sigma zero, epsilon prediction, no thresholding), nothing else.
The arithmetic is diffusers', in diffusers' order, so the numbers are equal to float rounding
(tests/pipeline/test_dpm_solver.py compares them; on the CPU they were bit for bit equal).

Notation (diffusers'): `sigma` is the k-diffusion sigma sqrt((1 - abar) / abar); a sample at
sigma is alpha_t * x0 + sigma_t * noise with alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t =
sigma * alpha_t, and lambda = log(alpha_t / sigma_t) is the half log-SNR the solver steps in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# diffusers' defaults for the keys a scheduler config may leave out.
SCHEDULE_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000, "beta_start": 0.0001,
                                     "beta_end": 0.02, "beta_schedule": "linear",
                                     "trained_betas": None}
# Keys diffusers would honour and this scheduler does not: a config that sets another value is
# refused rather than silently sampled wrong (an SD1.5 config leaves them out or at these).
FIXED_SETTINGS: dict[str, Any] = {"prediction_type": "epsilon", "thresholding": False,
                                  "rescale_betas_zero_snr": False}
KARRAS_RHO = 7.0  # the Karras et al. (2022) schedule's exponent, diffusers' and A1111's


def alphas_cumprod(scheduler_config: Mapping[str, Any]) -> torch.Tensor:
    """The training noise schedule's cumulative alphas, float32 [num_train_timesteps]."""
    config = {**SCHEDULE_DEFAULTS, **scheduler_config}
    _refuse_unsupported(config, ("rescale_betas_zero_snr",))
    steps, schedule = config["num_train_timesteps"], config["beta_schedule"]
    if config["trained_betas"] is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
    elif schedule == "linear":
        betas = torch.linspace(config["beta_start"], config["beta_end"], steps,
                               dtype=torch.float32)
    elif schedule == "scaled_linear":  # latent diffusion's (SD1.5's): linear in sqrt(beta)
        betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, steps,
                               dtype=torch.float32) ** 2
    else:
        raise ValueError(f"The noise schedule (beta_schedule) {schedule!r} is not supported; "
                         "only 'linear' and 'scaled_linear' (Stable Diffusion 1.5's) are.")
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass(frozen=True)
class StepOutput:
    prev_sample: torch.Tensor


class DPMSolverPP2MKarras:
    """The scheduler the sampler uses: set_timesteps, set_begin_index, add_noise, step.

    State between steps is a Python step counter and the previous step's predicted x0; sigmas
    are read by that counter, so on a device they never come back to the host.
    """

    order = 1  # model calls per step, as diffusers' attribute says (the sampler reads it)

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=torch.int64)
        self.sigmas = torch.empty(0)
        self._reset()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DPMSolverPP2MKarras:
        """From a diffusers scheduler config of any class; keys that do not matter are ignored
        (with Karras sigmas that includes timestep_spacing and steps_offset, as in diffusers)."""
        _refuse_unsupported(config, tuple(FIXED_SETTINGS))
        return cls(alphas_cumprod(config))

    def set_timesteps(self, num_inference_steps: int,
                      device: str | torch.device | None = None) -> None:
        # NumPy, as in diffusers: float32 training sigmas, a float64 Karras ramp between their
        # ends, each sigma's (fractional) training timestep rounded.
        train_sigmas = (((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5).numpy()
        sigmas = karras_sigmas(train_sigmas[0].item(), train_sigmas[-1].item(),
                               num_inference_steps)
        timesteps = sigma_to_t(sigmas, np.log(train_sigmas)).round()
        # final sigma zero: the last step lands on the predicted clean sample
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(timesteps)
        self._reset()  # the sigmas stay on the CPU, like diffusers'; the sampler moves them

    def set_begin_index(self, begin_index: int = 0) -> None:
        """The schedule index of the first step (img2img / inpainting starts part way)."""
        self._begin_index = begin_index

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any
                          ) -> torch.Tensor:
        return sample  # DPM-Solver feeds the model the sample unscaled

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """The samples noised to `timesteps`' sigma: before the first step the begin index's,
        after a step the one reached (inpainting re-noises the known region to it)."""
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        if self._begin_index is None:  # no begin index: look each timestep up, like diffusers
            sigma = sigmas[[self._index_for_timestep(t) for t in timesteps]]
            sigma = sigma.reshape(-1, *[1] * (original_samples.ndim - 1))
        else:  # one index for the batch, used as a 0-d view: no host-to-device index copy
            sigma = sigmas[self._begin_index if self._step_index is None else self._step_index]
        alpha_t, sigma_t = _alpha_sigma(sigma)
        return alpha_t * original_samples + sigma_t * noise

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor,
             sample: torch.Tensor) -> StepOutput:
        """One DPM-Solver++ step from the model's noise prediction at the current sigma."""
        if self.num_inference_steps is None:
            raise ValueError("set_timesteps must be called before step")
        if self._step_index is None:
            self._step_index = self._begin_index
        if self._step_index is None:
            self._step_index = self._index_for_timestep(timestep)
        index = self._step_index
        x0 = self._predicted_x0(model_output, sample, index)
        previous_x0, self._previous_x0 = self._previous_x0, x0
        # first order on the first step (no history yet) and on the last (to sigma 0 the
        # second-order term is 0 * inf; diffusers' lower_order_final with final sigma zero, at
        # any number of steps), second order between
        second_order = previous_x0 is not None and index < len(self.timesteps) - 1
        prev_sample = self._update(sample.to(torch.float32), x0,
                                   previous_x0 if second_order else None, index)
        self._step_index += 1
        return StepOutput(prev_sample.to(x0.dtype))

    def _predicted_x0(self, model_output: torch.Tensor, sample: torch.Tensor, index: int
                      ) -> torch.Tensor:
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index])
        return (sample - sigma_t * model_output) / alpha_t  # epsilon prediction -> x0

    def _update(self, sample: torch.Tensor, x0: torch.Tensor, previous_x0: torch.Tensor | None,
                index: int) -> torch.Tensor:
        """diffusers' dpm_solver_first_order_update, plus multistep_dpm_solver_second_order_
        update's D1 term (midpoint) when the previous x0 is given; same operations, same order."""
        alpha_t, sigma_t, lambda_t = _alpha_sigma_lambda(self.sigmas[index + 1])
        _, sigma_s0, lambda_s0 = _alpha_sigma_lambda(self.sigmas[index])
        h = lambda_t - lambda_s0
        x_t = (sigma_t / sigma_s0) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * x0
        if previous_x0 is None:
            return x_t
        _, _, lambda_s1 = _alpha_sigma_lambda(self.sigmas[index - 1])
        r0 = (lambda_s0 - lambda_s1) / h
        d1 = (1.0 / r0) * (x0 - previous_x0)
        return x_t - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1

    def _index_for_timestep(self, timestep: int | torch.Tensor) -> int:
        """diffusers' look-up without a begin index: where the timestep is in the schedule (the
        second match if it repeats, so a start part way skips no sigma; the end if absent)."""
        matches = (self.timesteps == torch.as_tensor(timestep).to(self.timesteps.device)
                   ).nonzero()
        if len(matches) == 0:
            return len(self.timesteps) - 1
        return int(matches[1 if len(matches) > 1 else 0].item())

    def _reset(self) -> None:
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._previous_x0: torch.Tensor | None = None


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int) -> np.ndarray:
    """Karras et al.'s schedule: evenly spaced in sigma^(1/rho), from sigma_max down (float64)."""
    ramp = np.linspace(0, 1, steps)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / KARRAS_RHO), sigma_max ** (1 / KARRAS_RHO)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** KARRAS_RHO


def sigma_to_t(sigmas: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Each sigma's fractional training timestep: log-sigma interpolated in the training
    schedule's log sigmas (diffusers' _sigma_to_t, for all sigmas at once)."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    dists = log_sigma[np.newaxis, :] - log_sigmas[:, np.newaxis]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]), 0, 1)
    return (1 - w) * low + w * high


def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha_t, sigma * alpha_t


def _alpha_sigma_lambda(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    alpha_t, sigma_t = _alpha_sigma(sigma)
    return alpha_t, sigma_t, torch.log(alpha_t) - torch.log(sigma_t)


def _refuse_unsupported(config: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if config.get(key, FIXED_SETTINGS[key]) != FIXED_SETTINGS[key]:
            raise ValueError(f"The scheduler config sets {key}={config[key]!r}; EasyPhoto's "
                             f"DPM++ 2M Karras supports only {FIXED_SETTINGS[key]!r}.")
