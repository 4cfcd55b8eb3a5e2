"""Generation inside the host: WebuiBackend against the stand-in A1111 + sd-webui-controlnet.

The stand-in's sampler paints the mask green and nudges every other pixel; these tests check
what we hand the host (settings, script state, ControlNet units, the LoRA) and what we make of
its answer, and that each missing piece gets a message that says what to do.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from easyphoto_core.pipeline.backend import (
    BaseModelMismatchError,
    ControlSpec,
    InpaintRequest,
    LoraRef,
    MissingModelError,
)
from easyphoto_core.pipeline.sampler import Interrupted
from tests.webui.test_registration import STAND_IN, _forget_host_modules


@pytest.fixture()
def webui(monkeypatch, tmp_path):
    monkeypatch.setenv("STAND_IN_LORA_DIR", str(tmp_path / "loras"))
    for name in ("STAND_IN_CONTROLNET", "STAND_IN_CONTROLNET_MODELS", "STAND_IN_SAMPLER_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    _forget_host_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(STAND_IN))
    from modules import processing, shared

    from easyphoto_webui.generation import WebuiBackend

    backend = WebuiBackend(lora_dir=tmp_path / "loras", controlnet_dirs=[tmp_path / "cn"])
    yield backend, processing.runs, shared
    _forget_host_modules(monkeypatch)


def _lora(tmp_path, base: str = "sd_v1") -> LoraRef:
    path = tmp_path / "ws" / "easyphoto_alice.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, str(path),
              metadata={"ss_base_model_version": base})
    return LoraRef("easyphoto_alice", path, 0.9)


def _request(*, kinds=("canny", "openpose"), lora=None) -> InpaintRequest:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 250, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    controls = tuple(ControlSpec(kind, rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), 0.5)
                     for kind in kinds)
    return InpaintRequest(image=image, mask=mask, prompt="easyphoto_face, photo",
                          negative_prompt="blurry", steps=20, denoise=0.45, cfg_scale=7.0,
                          seed=11, controls=controls, lora=lora)


def test_inpaint_runs_img2img_on_the_hosts_model_with_our_units_and_lora(webui, tmp_path):
    backend, runs, _ = webui
    request = _request(lora=_lora(tmp_path))
    result = backend.inpaint(request)

    inside = request.mask == 255
    assert (result[inside] == (20, 200, 40)).all()  # the host's painting, inside the mask
    assert np.array_equal(result[~inside], request.image[~inside])  # its nudge undone outside
    (run,) = runs
    p = run["p"]
    assert p.settings["prompt"] == "easyphoto_face, photo, <lora:easyphoto_alice:0.9>"
    expected = {"inpainting_fill": 1, "mask_blur": 0, "denoising_strength": 0.45, "steps": 20,
                "seed": 11, "cfg_scale": 7.0, "width": 96, "height": 64,
                "sampler_name": "DPM++ 2M", "scheduler": "Karras", "do_not_save_samples": True}
    assert {k: p.settings[k] for k in expected} == expected
    assert np.array_equal(np.asarray(p.image_mask), request.mask)
    assert p.is_api_when_scripts_set is True and p.closed
    assert p.script_args[1:4] == [False, "", 0.8]  # the scripts' own defaults
    assert run["lock_held"] and run["job"] == "easyphoto"
    units = run["units"]
    assert [(u.module, u.model, u.weight) for u in units] == [
        ("none", "control_v11p_sd15_canny [d14c016b]", 0.5),
        ("none", "control_v11p_sd15_openpose [cab727d4]", 0.5)]
    assert np.array_equal(units[0].image, request.controls[0].image)
    installed = tmp_path / "loras" / "easyphoto_alice.safetensors"
    assert installed.read_bytes() == request.lora.path.read_bytes()


def test_a_model_is_found_by_its_stem_with_a_suffix(webui):
    backend, runs, _ = webui
    backend.inpaint(_request(kinds=("tile",)))
    assert runs[-1]["units"][0].model == "control_v11f1e_sd15_tile_fp16 [3b860298]"


def test_without_the_controlnet_extension_the_message_says_how_to_get_it(webui, monkeypatch):
    backend, runs, _ = webui
    monkeypatch.setenv("STAND_IN_CONTROLNET", "absent")
    with pytest.raises(MissingModelError, match="sd-webui-controlnet"):
        backend.check_controls({"canny"})
    with pytest.raises(MissingModelError, match="Extensions"):
        backend.inpaint(_request())
    assert runs == []


def test_a_missing_controlnet_model_is_named_with_its_folder(webui, monkeypatch, tmp_path):
    backend, runs, _ = webui
    monkeypatch.setenv("STAND_IN_CONTROLNET_MODELS", "control_v11p_sd15_canny [d14c016b]")
    backend.check_controls({"canny"})
    with pytest.raises(MissingModelError) as error:
        backend.check_controls({"canny", "openpose"})
    assert "control_v11p_sd15_openpose" in str(error.value)
    assert str(tmp_path / "cn") in str(error.value)
    assert runs == []


def test_more_units_than_the_host_allows_is_explained(webui):
    backend, runs, shared = webui
    shared.opts.data["control_net_unit_count"] = 1
    with pytest.raises(ValueError, match="ControlNet unit number to 2"):
        backend.inpaint(_request())
    assert runs == []


def test_a_lora_for_another_base_model_is_refused_and_not_installed(webui, tmp_path):
    backend, runs, _ = webui
    with pytest.raises(BaseModelMismatchError, match="sdxl"):
        backend.inpaint(_request(lora=_lora(tmp_path, base="sdxl_base_v1-0")))
    assert runs == [] and not (tmp_path / "loras").exists()


def test_our_interrupt_presses_the_hosts_interrupt(webui, monkeypatch):
    backend, _, shared = webui
    monkeypatch.setenv("STAND_IN_SAMPLER_SECONDS", "5")
    flag = {"set": False}

    import threading

    threading.Timer(0.3, lambda: flag.update(set=True)).start()
    with pytest.raises(Interrupted):
        backend.inpaint(_request(), interrupt=lambda: flag["set"])
    assert shared.state.interrupted  # the host's sampler was told to stop


def test_the_hosts_sampling_steps_reach_our_progress_callback(webui, monkeypatch):
    backend, _, _ = webui
    monkeypatch.setenv("STAND_IN_SAMPLER_SECONDS", "1.5")
    seen = []
    backend.inpaint(_request(), callback=lambda step, total: seen.append((step, total)))
    assert len(seen) >= 2 and all(total == 9 for _, total in seen)  # 20 steps x 0.45
    assert [step for step, _ in seen] == sorted(step for step, _ in seen)
