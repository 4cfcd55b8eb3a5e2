"""Infotext: built from the params model, in the host's grammar, read back into our params."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from easyphoto_core import infotext
from easyphoto_core.params import GenerateParams, ParamsError, params_to_dict, parse_params

# AUTOMATIC1111 1.10.1 modules/infotext_utils.py: re_param_code
HOST_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


@pytest.fixture()
def lora(tmp_path: Path) -> Path:
    path = tmp_path / "alice.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(2, 3)}, str(path),
              metadata={"ss_output_name": "alice"})
    return path


def _provenance(tmp_path: Path, lora: Path) -> infotext.Provenance:
    base = tmp_path / "sd15 base.safetensors"
    base.write_bytes(b"checkpoint bytes")
    return infotext.Provenance(seed=1234, width=640, height=512, user_ids=["alice", "bob"],
                               base_model=base, loras=[("alice", lora), ("bob", lora)])


def test_every_key_fits_the_hosts_grammar_and_is_unique():
    keys = infotext.field_keys()
    assert len(set(keys.values())) == len(keys)
    for key in keys.values():
        assert HOST_PAIR.fullmatch(f"{key}: 1"), key


def test_round_trip_restores_every_field(tmp_path, lora):
    params = parse_params(GenerateParams, {
        "prompt": "a photo, with commas: and colons", "negative_prompt": "blurry\nsecond line",
        "seed": 77, "cfg_scale": 5.5, "lora_weight": 0.7, "color_control": True,
        "first_diffusion_steps": 12, "mask_dilation": 0.2, "apply_face_fusion_after": False})
    text = infotext.build(params, _provenance(tmp_path, lora))
    restored, user_ids = infotext.generate_params(text)
    # the seed written is the one the portrait was made with (-1 = random becomes a number)
    assert params_to_dict(restored) == {**params_to_dict(params), "seed": 1234}
    assert user_ids == ["alice", "bob"]


def test_hashes_are_the_hosts(tmp_path, lora):
    text = infotext.build(GenerateParams(), _provenance(tmp_path, lora))
    values = infotext.parse(text)
    assert values["Model"] == "sd15 base"
    assert values["Model hash"] == hashlib.sha256(b"checkpoint bytes").hexdigest()[:10]
    data = lora.read_bytes()
    header = int.from_bytes(data[:8], "little")
    addnet = hashlib.sha256(data[8 + header:]).hexdigest()[:12]  # the host's Lora shorthash
    assert values["Lora hashes"] == f"alice: {addnet}, bob: {addnet}"
    assert values["Seed"] == "1234" and values["Size"] == "640x512"


def test_png_carries_it_where_the_hosts_png_info_reads(tmp_path, lora):
    text = infotext.build(GenerateParams(), _provenance(tmp_path, lora))
    path = tmp_path / "out.png"
    infotext.save_png(path, np.zeros((8, 8, 3), np.uint8), text)
    with Image.open(path) as image:
        assert image.info["parameters"] == text
    assert infotext.read_infotext(path) == text


def test_foreign_or_bad_texts_are_refused_with_reason():
    with pytest.raises(ValueError, match="not made by EasyPhoto"):
        infotext.generate_params("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    with pytest.raises(ParamsError, match="lora_weight"):
        infotext.generate_params("p\nNegative prompt: n\nSteps: 20, Seed: 1, "
                                 "EasyPhoto LoRA weight: 9, EasyPhoto version: x")


def test_a_portraits_infotext_names_its_seed_users_and_their_loras(tmp_path, lora):
    from types import SimpleNamespace

    from easyphoto_core.workspace import Workspace, atomic_write_bytes

    workspace = Workspace(tmp_path / "ws")
    alice = workspace.user("alice")
    atomic_write_bytes(alice.lora_file, lora.read_bytes())
    result = SimpleNamespace(image=np.zeros((48, 64, 3), np.uint8), seed=99, faces=[
        SimpleNamespace(user_id="alice"), SimpleNamespace(user_id="nobody")])
    text = infotext.for_portrait(GenerateParams(seed=-1), result, workspace=workspace,
                                 base_model=None)
    values = infotext.parse(text)
    assert values["Seed"] == "99" and values["Size"] == "64x48"
    assert values["EasyPhoto user ids"] == "alice, nobody"
    assert values["Lora hashes"] == f"{alice.lora_name}: {infotext.lora_hash(alice.lora_file)}"
    assert "Model hash" not in values
