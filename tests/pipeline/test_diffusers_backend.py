"""The standalone backend on the tiny models: ControlNet lookup, LoRA apply/remove, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from easyphoto_core.pipeline.backend import (
    BaseModelMismatchError,
    ControlSpec,
    InpaintRequest,
    LoraRef,
    MissingModelError,
)
from easyphoto_core.pipeline.diffusers_backend import DiffusersBackend, ModelCache, find_controlnet
from tests.pipeline.conftest import write_random_lora


@pytest.fixture(scope="module")
def backend(tiny_files):
    cache = ModelCache(device=torch.device("cpu"), dtype=torch.float32)
    return DiffusersBackend(base_model=tiny_files.checkpoint,
                            controlnet_dirs=[tiny_files.checkpoint.parent], cache=cache)


def request(**overrides) -> InpaintRequest:
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    values = {"image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "mask": mask,
              "prompt": "easyphoto_face", "negative_prompt": "", "steps": 4, "denoise": 0.5,
              "cfg_scale": 7.0, "seed": 1}
    return InpaintRequest(**{**values, **overrides})


def test_controlnet_files_are_found_by_stem_or_fp16_name(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "control_v11p_sd15_canny_fp16.safetensors").write_bytes(b"x")
    assert find_controlnet("control_v11p_sd15_canny", [tmp_path]).name.endswith("fp16.safetensors")
    (tmp_path / "control_v11p_sd15_canny.pth").write_bytes(b"x")
    assert find_controlnet("control_v11p_sd15_canny", [tmp_path]).name == \
        "control_v11p_sd15_canny.pth"
    assert find_controlnet("control_v11p_sd15_openpose", [tmp_path]) is None


def test_missing_controlnet_names_the_file_and_folder(tiny_files, tmp_path):
    backend = DiffusersBackend(base_model=tiny_files.checkpoint, controlnet_dirs=[tmp_path],
                               cache=ModelCache(torch.device("cpu"), torch.float32))
    with pytest.raises(MissingModelError) as caught:
        backend.check_controls({"canny"})
    assert "control_v11p_sd15_canny" in str(caught.value) and str(tmp_path) in str(caught.value)


def test_lora_changes_the_face_and_is_removed_after(backend, tiny_files, tmp_path):
    lora = LoraRef("easyphoto_a", write_random_lora(tmp_path / "a.safetensors",
                                                    tiny_files.checkpoint), 0.9)
    unet = backend.cache.checkpoint(tiny_files.checkpoint).unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    plain = backend.inpaint(request())
    with_lora = backend.inpaint(request(lora=lora))
    assert not np.array_equal(plain, with_lora)
    # kept merged for the next pass with the same LoRA: same result, no re-merge
    assert np.array_equal(backend.inpaint(request(lora=lora)), with_lora)
    backend.release()
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert np.array_equal(backend.inpaint(request()), plain)
    # a request without the LoRA takes it off by itself
    backend.inpaint(request(lora=lora))
    assert np.array_equal(backend.inpaint(request()), plain)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())


def test_controls_are_applied(backend):
    edges = np.zeros((64, 64, 3), np.uint8)
    edges[:, ::3] = 255
    plain = backend.inpaint(request())
    guided = backend.inpaint(request(controls=(ControlSpec("canny", edges, 1.0),)))
    assert not np.array_equal(plain, guided)


def test_lora_of_another_base_type_is_refused(backend, tiny_files, tmp_path):
    path = write_random_lora(tmp_path / "xl.safetensors", tiny_files.checkpoint, base="sdxl_base_v1-0")
    with pytest.raises(BaseModelMismatchError, match="sdxl"):
        backend.check_lora(LoraRef("easyphoto_xl", path, 1.0))


def test_lora_of_other_shapes_is_refused_and_leaves_the_model_intact(backend, tiny_files,
                                                                    tmp_path):
    from easyphoto_core.lora_format import save_lora

    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    tensors = {f"{name}.lora_down.weight": torch.ones(2, 7), f"{name}.lora_up.weight":
               torch.ones(9, 2), f"{name}.alpha": torch.tensor(2.0)}
    path = tmp_path / "wrong.safetensors"
    save_lora(path, tensors, {"ss_base_model_version": "sd_v1"})
    unet = backend.cache.checkpoint(tiny_files.checkpoint).unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    with pytest.raises(BaseModelMismatchError, match="another base model"):
        backend.inpaint(request(lora=LoraRef("easyphoto_wrong", path, 1.0)))
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
