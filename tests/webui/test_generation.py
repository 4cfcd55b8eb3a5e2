"""Generation inside the host: WebuiBackend against both stand-in hosts, A1111 with
sd-webui-controlnet and Forge with its built-in ControlNet.

The stand-ins' sampler paints the mask green and nudges every other pixel; these tests check
what we hand the host (settings, script state, ControlNet units, the LoRA) and what we make of
its answer: a unit the host's ControlNet did not apply fails the pass with the cause, a cancel
says who stopped it, and each missing piece gets a message that says what to do in that host.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from easyphoto_core.jobs import JobCancelled
from easyphoto_core.pipeline.backend import (
    BaseModelMismatchError,
    ControlSpec,
    InpaintRequest,
    LoraRef,
    MissingModelError,
)
from tests.webui.stand_ins import HOSTS, forget_host_modules, use_host

MODULE = {"a1111": "none", "forge": "None"}  # "no preprocessor", as each host spells it


@pytest.fixture(params=HOSTS)
def webui(request, monkeypatch, tmp_path):
    monkeypatch.setenv("STAND_IN_LORA_DIR", str(tmp_path / "loras"))
    monkeypatch.setenv("STAND_IN_CHECKPOINT", str(tmp_path / "sd15.safetensors"))
    for name in ("STAND_IN_CONTROLNET", "STAND_IN_CONTROLNET_MODELS", "STAND_IN_SAMPLER_SECONDS",
                 "STAND_IN_CONTROLNET_BROKEN", "STAND_IN_INTERRUPT_AT_STEP"):
        monkeypatch.delenv(name, raising=False)
    use_host(monkeypatch, request.param)
    from modules import processing, shared

    from easyphoto_webui.generation import WebuiBackend

    backend = WebuiBackend(lora_dir=tmp_path / "loras", controlnet_dirs=[tmp_path / "cn"])
    assert backend.name == request.param  # recognised by what the host has
    yield backend, processing.runs, shared
    forget_host_modules(monkeypatch)


def _lora(tmp_path, base: str = "sd_v1") -> LoraRef:
    path = tmp_path / "ws" / "easyphoto_alice.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, str(path),
              metadata={"ss_base_model_version": base})
    return LoraRef("easyphoto_alice", path, 0.9)


def _request(*, kinds=("canny", "openpose"), lora=None, dark=False) -> InpaintRequest:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 250, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    controls = tuple(ControlSpec(kind, np.zeros((64, 96, 3), np.uint8) if dark else
                                 rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), 0.5)
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
    assert p.script_args[1:4] == [False, "", 0.8]  # the other scripts' own defaults
    assert run["lock_held"] and run["job"] == "easyphoto"
    models = ["control_v11p_sd15_canny [d14c016b]", "control_v11p_sd15_openpose [cab727d4]"]
    units = run["units"]
    assert [(u.module, u.model, u.weight) for u in units] == [
        (MODULE[backend.name], model, 0.5) for model in models]
    assert np.array_equal(units[0].image, request.controls[0].image)
    assert run["applied"] == models  # the host's ControlNet took both units
    installed = tmp_path / "loras" / "easyphoto_alice.safetensors"
    assert installed.read_bytes() == request.lora.path.read_bytes()


def test_forge_generates_on_its_main_thread(webui):
    backend, runs, _ = webui
    backend.inpaint(_request())
    assert (runs[-1]["thread"] == "MainThread (Forge)") == (backend.name == "forge")


def test_a_nearly_black_control_image_is_taken_as_it_is(webui):
    # Forge's script reads the foreground layer of a dark image; without one it fails
    backend, runs, _ = webui
    backend.inpaint(_request(kinds=("canny",), dark=True))
    assert len(runs[-1]["applied"]) == 1


def test_a_model_is_found_by_its_stem_with_a_suffix(webui):
    backend, runs, _ = webui
    backend.inpaint(_request(kinds=("tile",)))
    assert runs[-1]["units"][0].model == "control_v11f1e_sd15_tile_fp16 [3b860298]"


def test_without_the_hosts_controlnet_the_message_fits_the_host(webui, monkeypatch):
    backend, runs, _ = webui
    monkeypatch.setenv("STAND_IN_CONTROLNET", "absent")
    with pytest.raises(MissingModelError) as error:
        backend.check_controls({"canny"})
    with pytest.raises(MissingModelError, match="Extensions"):
        backend.inpaint(_request())
    message = str(error.value)
    if backend.name == "forge":  # its ControlNet is built in: never send users to Mikubill's
        assert "built-in ControlNet" in message and "sd-webui-controlnet" not in message
    else:
        assert "Mikubill/sd-webui-controlnet" in message
    assert runs == []


def test_a_missing_controlnet_model_is_looked_for_again_then_named_with_its_folder(
        webui, monkeypatch, tmp_path):
    backend, runs, _ = webui
    monkeypatch.setenv("STAND_IN_CONTROLNET_MODELS", "control_v11p_sd15_canny [d14c016b]")
    backend.check_controls({"canny"})
    with pytest.raises(MissingModelError) as error:
        backend.check_controls({"canny", "openpose"})
    assert "control_v11p_sd15_openpose" in str(error.value)
    assert str(tmp_path / "cn") in str(error.value)
    assert runs == []


def test_a_model_added_after_start_up_is_found_by_the_hosts_refresh(webui, monkeypatch):
    backend, runs, _ = webui
    monkeypatch.setenv("STAND_IN_CONTROLNET_MODELS", "control_v11p_sd15_canny [d14c016b]")
    backend.check_controls({"canny"})  # Forge read its list at start-up: now only canny
    monkeypatch.setenv("STAND_IN_CONTROLNET_MODELS", "control_v11p_sd15_canny [d14c016b],"
                       "control_v11p_sd15_openpose [cab727d4]")
    backend.inpaint(_request())
    assert runs[-1]["applied"][1] == "control_v11p_sd15_openpose [cab727d4]"


def test_more_units_than_the_host_allows_is_explained(webui):
    backend, runs, shared = webui
    shared.opts.data["control_net_unit_count"] = 1
    with pytest.raises(ValueError, match="ControlNet unit number to 2"):
        backend.inpaint(_request())
    assert runs == []


def test_checking_a_lora_reads_its_header_and_copies_nothing(webui, tmp_path):
    """check_lora runs on the request thread (the WebUI's event loop): the copy into the host's
    Lora folder waits for the job's first pass."""
    backend, runs, _ = webui
    lora = _lora(tmp_path)
    backend.check_lora(lora)
    assert runs == [] and not (tmp_path / "loras").exists()
    backend.inpaint(_request(lora=lora))
    assert (tmp_path / "loras" / "easyphoto_alice.safetensors").is_file()


def test_a_lora_for_another_base_model_is_refused_and_not_installed(webui, tmp_path):
    backend, runs, _ = webui
    with pytest.raises(BaseModelMismatchError, match="sdxl"):
        backend.inpaint(_request(lora=_lora(tmp_path, base="sdxl_base_v1-0")))
    assert runs == [] and not (tmp_path / "loras").exists()


def test_a_controlnet_error_inside_the_host_fails_the_pass_with_its_cause(webui, monkeypatch):
    """The hosts log and swallow a script's exception and paint on without ControlNet; we
    stop the host's sampler and fail with ControlNet's own message instead."""
    from modules import errors

    from easyphoto_webui.host import ControlNetNotApplied

    backend, runs, shared = webui
    monkeypatch.setenv("STAND_IN_CONTROLNET_BROKEN", "control_v11p_sd15_openpose")
    with pytest.raises(ControlNetNotApplied) as error:
        backend.inpaint(_request())
    assert "control_v11p_sd15_openpose" in str(error.value)  # the host's own words
    assert "console" in str(error.value)
    assert errors.reported  # the host reported it as usual
    assert shared.state.interrupted  # and was told not to paint on
    from modules import scripts

    script = next(s for s in scripts.scripts_img2img.alwayson_scripts
                  if s.title() == "ControlNet")
    assert not set(backend.host.controlnet().phases) & set(vars(script))  # unwrapped again


def test_forge_fails_on_the_a1111_spelling_of_no_preprocessor_and_we_say_so(webui, monkeypatch):
    """Seen in a real Forge: module "none" made its script fail on every pass while the job
    ended "done". Spelled that way on purpose here, the guard turns it into an error."""
    from easyphoto_webui import hosts
    from easyphoto_webui.host import ControlNetNotApplied

    backend, _, _ = webui
    if backend.name != "forge":
        pytest.skip("Forge's spelling")

    def a1111_spelling(self, *, model, weight, image):
        return self.api.ControlNetUnit(enabled=True, module="none", model=model, weight=weight,
                                       image=image)

    monkeypatch.setattr(hosts.ForgeControlNet, "unit", a1111_spelling)
    with pytest.raises(ControlNetNotApplied, match="slider_resolution"):
        backend.inpaint(_request())


def test_units_the_controlnet_script_did_not_take_are_an_error(webui, monkeypatch):
    from modules import scripts

    from easyphoto_webui.host import ControlNetNotApplied

    backend, _, _ = webui
    script = next(s for s in scripts.scripts_img2img.alwayson_scripts
                  if s.title() == "ControlNet")
    for phase in backend.host.controlnet().phases:  # they run, and take nothing
        monkeypatch.setattr(type(script), phase, lambda self, p, *args, **kwargs: None)
    with pytest.raises(ControlNetNotApplied, match="applied 0 of the 2"):
        backend.inpaint(_request())


def test_our_cancel_presses_the_hosts_interrupt_and_ends_cancelled(webui, monkeypatch):
    backend, _, shared = webui
    monkeypatch.setenv("STAND_IN_SAMPLER_SECONDS", "5")
    with pytest.raises(JobCancelled) as stop:
        backend.inpaint(_request(), interrupt=lambda: shared.state.sampling_step >= 2)
    assert str(stop.value) == "cancelled"  # not "interrupted in the WebUI"
    assert shared.state.interrupted  # the host's sampler was told to stop


def test_the_hosts_interrupt_button_ends_the_pass_cancelled_and_says_so(webui, monkeypatch):
    backend, runs, _ = webui
    monkeypatch.setenv("STAND_IN_INTERRUPT_AT_STEP", "3")
    with pytest.raises(JobCancelled, match="WebUI's Interrupt button"):
        backend.inpaint(_request(), interrupt=lambda: False)
    assert len(runs) == 1


def test_the_hosts_sampling_steps_reach_our_progress_callback(webui, monkeypatch):
    backend, _, _ = webui
    monkeypatch.setenv("STAND_IN_SAMPLER_SECONDS", "1.5")
    seen = []
    backend.inpaint(_request(), callback=lambda step, total: seen.append((step, total)))
    assert len(seen) >= 2 and all(total == 9 for _, total in seen)  # 20 steps x 0.45
    assert [step for step, _ in seen] == sorted(step for step, _ in seen)
