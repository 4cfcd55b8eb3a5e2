"""Our DPM++ 2M Karras against diffusers' DPMSolverMultistepScheduler in the configuration it
replaces, on SD1.5's scheduler config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from easyphoto_core.pipeline.dpm_solver import DPMSolverPP2MKarras, alphas_cumprod
from easyphoto_core.sd.loading import SCHEDULER_CONFIG_FILE, SD15_CONFIG_DIR

STEPS = (1, 2, 5, 14, 15, 20, 50)
SHAPE = (1, 4, 8, 12)


@pytest.fixture(scope="module")
def config():
    return json.loads((SD15_CONFIG_DIR / SCHEDULER_CONFIG_FILE).read_text())


def theirs(config):
    diffusers = pytest.importorskip("diffusers")
    return diffusers.DPMSolverMultistepScheduler.from_config(
        config, use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2)


def begin_indices(steps: int) -> list[int]:
    return sorted({0, steps // 2, steps - 1})


def denoise(scheduler, steps: int, begin: int, seed: int = 0) -> list[torch.Tensor]:
    """The sampler's pattern: noise to the first timestep, then step, re-noising as it goes."""
    generator = torch.Generator().manual_seed(seed)
    original, noise = (torch.randn(SHAPE, generator=generator) for _ in range(2))
    scheduler.set_timesteps(steps)
    scheduler.sigmas = scheduler.sigmas.to("cpu")  # what the sampler does (to its device)
    scheduler.set_begin_index(begin)
    timesteps = scheduler.timesteps[begin:]
    samples = [scheduler.add_noise(original, noise, timesteps[:1])]
    for index, timestep in enumerate(timesteps):
        prediction = torch.randn(SHAPE, generator=generator)
        samples.append(scheduler.step(prediction, timestep, samples[-1]).prev_sample)
        if index + 1 < len(timesteps):
            samples.append(scheduler.add_noise(original, noise, timesteps[index + 1:index + 2]))
    return samples


def test_alphas_cumprod_equal_diffusers(config):
    diffusers = pytest.importorskip("diffusers")
    expected = diffusers.DDPMScheduler.from_config(config).alphas_cumprod
    ours = alphas_cumprod(config)
    assert ours.dtype == torch.float32 and ours.shape == (1000,)
    assert torch.equal(ours, expected)


def test_linear_defaults_equal_diffusers():
    diffusers = pytest.importorskip("diffusers")
    assert torch.equal(alphas_cumprod({}), diffusers.DDPMScheduler().alphas_cumprod)


@pytest.mark.parametrize("steps", STEPS)
def test_schedule_equals_diffusers(config, steps):
    reference, ours = theirs(config), DPMSolverPP2MKarras.from_config(config)
    reference.set_timesteps(steps)
    ours.set_timesteps(steps)
    assert ours.timesteps.dtype == torch.int64 and ours.sigmas.dtype == torch.float32
    assert torch.equal(ours.timesteps, reference.timesteps)
    torch.testing.assert_close(ours.sigmas, reference.sigmas, rtol=1e-6, atol=0)
    assert ours.sigmas[-1] == 0 and ours.order == reference.order == 1


@pytest.mark.parametrize("steps", STEPS)
def test_denoising_equals_diffusers(config, steps):
    reference = theirs(config)
    for begin in begin_indices(steps):
        expected = denoise(reference, steps, begin)
        ours = denoise(DPMSolverPP2MKarras.from_config(config), steps, begin)
        assert len(ours) == len(expected)
        for mine, their in zip(ours, expected, strict=True):
            torch.testing.assert_close(mine, their, rtol=1e-5, atol=1e-5)


def test_add_noise_equals_diffusers_with_and_without_begin_index(config):
    reference, ours = theirs(config), DPMSolverPP2MKarras.from_config(config)
    generator = torch.Generator().manual_seed(1)
    original, noise = (torch.randn(SHAPE, generator=generator) for _ in range(2))
    for scheduler in (reference, ours):
        scheduler.set_timesteps(20)
    timesteps = ours.timesteps[[0, 7, 19]]
    batch = (original.expand(3, -1, -1, -1), noise.expand(3, -1, -1, -1))
    assert torch.equal(ours.add_noise(*batch, timesteps), reference.add_noise(*batch, timesteps))
    for scheduler in (reference, ours):
        scheduler.set_begin_index(7)
    assert torch.equal(ours.add_noise(original, noise, timesteps[1:2]),
                       reference.add_noise(original, noise, timesteps[1:2]))


@pytest.mark.parametrize("spacing", [{"timestep_spacing": "leading", "steps_offset": 1},
                                     {"timestep_spacing": "trailing", "steps_offset": 0}])
def test_spacing_and_offset_have_no_effect_with_karras_sigmas_as_in_diffusers(config, spacing):
    reference = theirs({**config, **spacing})
    ours, plain = DPMSolverPP2MKarras.from_config({**config, **spacing}), \
        DPMSolverPP2MKarras.from_config(config)
    for scheduler in (reference, ours, plain):
        scheduler.set_timesteps(20)
    assert torch.equal(ours.timesteps, reference.timesteps)
    assert torch.equal(ours.timesteps, plain.timesteps)
    assert torch.equal(ours.sigmas, plain.sigmas)


def test_scale_model_input_is_identity(config):
    ours = DPMSolverPP2MKarras.from_config(config)
    ours.set_timesteps(20)
    sample = torch.ones(SHAPE)
    assert ours.scale_model_input(sample, ours.timesteps[0]) is sample


def test_step_before_set_timesteps_is_refused(config):
    with pytest.raises(ValueError, match="set_timesteps"):
        DPMSolverPP2MKarras.from_config(config).step(torch.zeros(SHAPE), 999, torch.zeros(SHAPE))


def test_unknown_beta_schedule_is_refused_in_plain_words(config):
    with pytest.raises(ValueError, match=r"noise schedule \(beta_schedule\) 'squaredcos_cap_v2' "
                                         r"is not supported"):
        alphas_cumprod({**config, "beta_schedule": "squaredcos_cap_v2"})


@pytest.mark.parametrize(("key", "value"), [("prediction_type", "v_prediction"),
                                            ("rescale_betas_zero_snr", True),
                                            ("thresholding", True)])
def test_settings_it_cannot_honour_are_refused(config, key, value):
    with pytest.raises(ValueError, match=f"sets {key}="):
        DPMSolverPP2MKarras.from_config({**config, key: value})


def test_the_sampler_uses_it(config):
    from types import SimpleNamespace

    from easyphoto_core.pipeline.sampler import LatentInpainter

    inpainter = LatentInpainter(SimpleNamespace(scheduler_config=config),
                                device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(inpainter.make_scheduler(), DPMSolverPP2MKarras)


def test_making_the_scheduler_imports_neither_diffusers_nor_transformers():
    """The point of the module: the trainer's start-up is not charged diffusers' import."""
    code = ("import json, sys, types, torch\n"
            "from easyphoto_core.pipeline.sampler import LatentInpainter\n"
            f"config = json.loads(open({str(SD15_CONFIG_DIR / SCHEDULER_CONFIG_FILE)!r}).read())\n"
            "inpainter = LatentInpainter(types.SimpleNamespace(scheduler_config=config),\n"
            "                            device=torch.device('cpu'), dtype=torch.float32)\n"
            "inpainter.make_scheduler().set_timesteps(20)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"
