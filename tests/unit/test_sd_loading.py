"""Single-file SD 1.5 / ControlNet loading, the LDM key mapping and the tiny-model writer.

No weights are downloaded: tiny random-weight models are written in the host's file formats and
read back through the real loaders; the full-size SD 1.5 key set is checked on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from easyphoto_core.sd import ldm_keys
from easyphoto_core.sd.checkpoint import CheckpointError, SDKind, detect_sd_kind, read_state_dict
from easyphoto_core.sd.loading import (
    CONTROLNET_CONFIG_DIR,
    EMBEDDED_CONFIGS_KEY,
    RANDOM_WEIGHTS_KEY,
    SD15_CONFIG_DIR,
    build_component,
    load_controlnet,
    load_sd15_checkpoint,
    read_controlnet_config,
    read_sd15_configs,
)
from easyphoto_core.sd.tiny import (
    CONTROLNET_STEMS,
    SEED_OFFSETS,
    TINY_CONFIG_DIR,
    random_model,
    write_tiny_models,
)

SEED = 7


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def tiny_files(tiny_dir: Path):
    return write_tiny_models(tiny_dir, seed=SEED)


@pytest.fixture(scope="module")
def tiny(tiny_files):
    return load_sd15_checkpoint(tiny_files.checkpoint)


@pytest.fixture(scope="module")
def tiny_configs() -> dict:
    configs = read_sd15_configs(TINY_CONFIG_DIR)
    configs["controlnet"] = read_controlnet_config(TINY_CONFIG_DIR / "controlnet")
    return configs


@pytest.fixture(scope="module")
def sd15_meta() -> dict:
    """Full-size SD 1.5 models on the meta device (shapes only, no memory)."""
    configs = read_sd15_configs(SD15_CONFIG_DIR)
    configs["controlnet"] = read_controlnet_config(CONTROLNET_CONFIG_DIR)
    with torch.device("meta"):
        models = {c: build_component(c, configs[c]) for c in ldm_keys.COMPONENT_PREFIXES}
    return {"configs": configs, "models": models}


def host_state_dict(component: str, config: dict, model: torch.nn.Module) -> dict:
    state = model.state_dict()
    key_map = ldm_keys.component_key_map(component, config, state.keys())
    return ldm_keys.to_ldm_state_dict(state, key_map, prefix=ldm_keys.COMPONENT_PREFIXES[component])


def assert_same_state(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    a, e = actual.state_dict(), expected.state_dict()
    assert a.keys() == e.keys()
    for key in e:
        assert a[key].dtype == e[key].dtype, key
        assert torch.equal(a[key], e[key]), key


# --- round trip ------------------------------------------------------------------------------------


def test_tiny_files_are_named_like_the_real_ones(tiny_files, tiny_dir):
    assert tiny_files.checkpoint == tiny_dir / "sd15-tiny.safetensors"
    assert sorted(tiny_files.controlnets) == sorted(CONTROLNET_STEMS)
    assert {p.name for p in tiny_dir.iterdir()} == {
        "sd15-tiny.safetensors",
        "control_v11p_sd15_canny.safetensors",
        "control_v11p_sd15_openpose.safetensors",
        "control_v11f1e_sd15_tile.safetensors",
    }  # no temp files left behind


def test_checkpoint_uses_host_key_layout(tiny_files):
    tensors, metadata = read_state_dict(tiny_files.checkpoint)
    prefixes = {key.split(".")[0] for key in tensors}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert (
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight" in tensors
    )
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in tensors
    assert not any(key.endswith("position_ids") for key in tensors)
    assert tensors["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    assert all(t.dtype == torch.float32 for t in tensors.values())
    assert detect_sd_kind(tensors) is SDKind.SD1
    assert metadata[RANDOM_WEIGHTS_KEY] == "true"


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
def test_round_trip_sd_components(tiny, tiny_configs, component):
    source = random_model(component, tiny_configs[component], seed=SEED + SEED_OFFSETS[component])
    loaded = getattr(tiny, component)
    assert_same_state(loaded, source)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(p.requires_grad for p in loaded.parameters()) and not loaded.training


@pytest.mark.parametrize("stem", CONTROLNET_STEMS)
def test_round_trip_controlnets(tiny_files, tiny_configs, stem):
    source = random_model("controlnet", tiny_configs["controlnet"], seed=SEED + SEED_OFFSETS[stem])
    loaded = load_controlnet(tiny_files.controlnets[stem])
    assert_same_state(loaded, source)
    tensors, _ = read_state_dict(tiny_files.controlnets[stem])
    assert all(key.startswith("control_model.") for key in tensors)


def test_controlnets_differ_and_have_no_zero_weights(tiny_files):
    canny, _ = read_state_dict(tiny_files.canny)
    tile, _ = read_state_dict(tiny_files.tile)
    assert not torch.equal(
        canny["control_model.zero_convs.0.0.weight"], tile["control_model.zero_convs.0.0.weight"]
    )
    for key, tensor in canny.items():
        if key.endswith(".weight") and "norm" not in key:
            assert torch.any(tensor), f"{key} is all zeros: the ControlNet would have no effect"


def test_controlnet_without_prefix_loads(tiny_files, tmp_path):
    tensors, metadata = read_state_dict(tiny_files.openpose)
    bare = {key.removeprefix("control_model."): t for key, t in tensors.items()}
    path = tmp_path / "control_v11p_sd15_openpose.safetensors"
    save_file(bare, str(path), metadata=metadata)
    assert_same_state(load_controlnet(path), load_controlnet(tiny_files.openpose))


def test_embedded_configs_round_trip(tiny_files, tiny_configs):
    _, metadata = read_state_dict(tiny_files.checkpoint)
    embedded = json.loads(metadata[EMBEDDED_CONFIGS_KEY])
    assert embedded == {c: tiny_configs[c] for c in ("unet", "vae", "text_encoder", "scheduler")}
    _, cn_metadata = read_state_dict(tiny_files.canny)
    assert json.loads(cn_metadata[EMBEDDED_CONFIGS_KEY]) == {
        "controlnet": tiny_configs["controlnet"]
    }


def test_explicit_config_dir_wins(tiny_files):
    # The embedded (tiny) configs would load; the SD 1.5 ones must be used and must not fit.
    with pytest.raises(CheckpointError) as error:
        load_sd15_checkpoint(tiny_files.checkpoint, config_dir=SD15_CONFIG_DIR)
    message = str(error.value)
    assert str(tiny_files.checkpoint) in message and str(SD15_CONFIG_DIR) in message
    assert "wrong shape" in message
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_controlnet(tiny_files.canny, config_dir=CONTROLNET_CONFIG_DIR)


def test_scheduler_config_is_sd15s(tiny):
    config = tiny.scheduler_config
    assert (config["beta_start"], config["beta_end"], config["beta_schedule"]) == (
        0.00085,
        0.012,
        "scaled_linear",
    )
    assert (config["num_train_timesteps"], config["steps_offset"]) == (1000, 1)
    assert config["clip_sample"] is False and config["set_alpha_to_one"] is False
    assert tiny.source.name == "sd15-tiny.safetensors"


# --- cross-check against diffusers' own LDM -> diffusers conversion ----------------------------------


def test_mapping_matches_diffusers_conversion_on_tiny_values(tiny_files, tiny, tiny_configs):
    from diffusers.loaders.single_file_utils import (
        convert_controlnet_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    tensors, _ = read_state_dict(tiny_files.checkpoint)
    controlnet_tensors, _ = read_state_dict(tiny_files.canny)
    cases = [
        (convert_ldm_unet_checkpoint(dict(tensors), tiny_configs["unet"]), tiny.unet),
        (convert_ldm_vae_checkpoint(dict(tensors), tiny_configs["vae"]), tiny.vae),
        (
            convert_controlnet_checkpoint(dict(controlnet_tensors), tiny_configs["controlnet"]),
            load_controlnet(tiny_files.canny),
        ),
    ]
    for converted, model in cases:
        expected = model.state_dict()
        assert converted.keys() == expected.keys()
        for key, tensor in expected.items():
            assert torch.equal(converted[key], tensor), key


@pytest.mark.parametrize(
    ("component", "converter"),
    [
        ("unet", "convert_ldm_unet_checkpoint"),
        ("vae", "convert_ldm_vae_checkpoint"),
        ("controlnet", "convert_controlnet_checkpoint"),
    ],
)
def test_sd15_mapping_matches_diffusers_conversion(sd15_meta, component, converter):
    from diffusers.loaders import single_file_utils

    config, model = sd15_meta["configs"][component], sd15_meta["models"][component]
    host = host_state_dict(component, config, model)
    converted = getattr(single_file_utils, converter)(dict(host), config)
    expected = model.state_dict()
    assert converted.keys() == expected.keys()
    inverse = ldm_keys.invert_key_map(
        ldm_keys.component_key_map(component, config, expected.keys())
    )
    prefix = ldm_keys.COMPONENT_PREFIXES[component]
    for host_key, tensor in host.items():
        diffusers_key = inverse[host_key[len(prefix) :]]
        assert converted[diffusers_key].shape == expected[diffusers_key].shape, diffusers_key
        if tensor.shape == expected[diffusers_key].shape:  # not reshaped: the very same tensor
            assert converted[diffusers_key] is tensor, diffusers_key


# --- full-size SD 1.5 key facts --------------------------------------------------------------------


def test_sd15_unet_key_set(sd15_meta):
    host = host_state_dict("unet", sd15_meta["configs"]["unet"], sd15_meta["models"]["unet"])
    assert len(host) == 686
    shapes = {key: list(t.shape) for key, t in host.items()}
    prefix = "model.diffusion_model."
    assert shapes[prefix + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"] == [320, 320]
    assert shapes[prefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == [320, 768]
    assert shapes[prefix + "input_blocks.1.1.proj_in.weight"] == [320, 320, 1, 1]
    assert shapes[prefix + "input_blocks.3.0.op.weight"] == [320, 320, 3, 3]
    assert shapes[prefix + "input_blocks.4.0.skip_connection.weight"] == [640, 320, 1, 1]
    assert shapes[prefix + "middle_block.1.proj_out.weight"] == [1280, 1280, 1, 1]
    assert shapes[prefix + "output_blocks.2.1.conv.weight"] == [1280, 1280, 3, 3]
    assert shapes[prefix + "output_blocks.5.2.conv.weight"] == [1280, 1280, 3, 3]
    assert shapes[prefix + "output_blocks.11.1.transformer_blocks.0.ff.net.2.weight"] == [320, 1280]
    assert shapes[prefix + "time_embed.0.weight"] == [1280, 320]
    assert shapes[prefix + "out.2.weight"] == [4, 320, 3, 3]
    assert not any(".output_blocks.11.2." in key for key in host)  # no upsampler on the last level


def test_sd15_vae_and_text_encoder_key_sets(sd15_meta):
    configs, models = sd15_meta["configs"], sd15_meta["models"]
    vae = host_state_dict("vae", configs["vae"], models["vae"])
    assert len(vae) == 248
    assert list(vae["first_stage_model.encoder.mid.attn_1.q.weight"].shape) == [512, 512, 1, 1]
    assert list(vae["first_stage_model.decoder.mid.attn_1.proj_out.weight"].shape) == [
        512,
        512,
        1,
        1,
    ]
    assert list(vae["first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"].shape) == [
        128,
        256,
        1,
        1,
    ]
    assert list(vae["first_stage_model.decoder.up.3.upsample.conv.weight"].shape) == [
        512,
        512,
        3,
        3,
    ]
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in vae
    assert list(vae["first_stage_model.quant_conv.weight"].shape) == [8, 8, 1, 1]

    text = host_state_dict("text_encoder", configs["text_encoder"], models["text_encoder"])
    assert len(text) == 196  # position_ids is never written
    prefix = "cond_stage_model.transformer.text_model."
    assert list(text[prefix + "embeddings.token_embedding.weight"].shape) == [49408, 768]
    assert list(text[prefix + "embeddings.position_embedding.weight"].shape) == [77, 768]
    assert list(text[prefix + "encoder.layers.11.mlp.fc1.weight"].shape) == [3072, 768]


def test_sd15_controlnet_key_set(sd15_meta):
    host = host_state_dict(
        "controlnet", sd15_meta["configs"]["controlnet"], sd15_meta["models"]["controlnet"]
    )
    assert len(host) == 340
    shapes = {key.removeprefix("control_model."): list(t.shape) for key, t in host.items()}
    assert shapes["input_hint_block.0.weight"] == [16, 3, 3, 3]
    assert shapes["input_hint_block.12.weight"] == [256, 96, 3, 3]
    assert shapes["input_hint_block.14.weight"] == [320, 256, 3, 3]
    assert shapes["zero_convs.11.0.weight"] == [1280, 1280, 1, 1]
    assert shapes["middle_block_out.0.weight"] == [1280, 1280, 1, 1]
    assert shapes["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == [320, 768]
    assert not any(key.startswith(("output_blocks.", "out.")) for key in shapes)


def test_tiny_configs_give_the_sd15_key_names(sd15_meta, tiny_configs):
    with torch.device("meta"):
        for component, prefix in ldm_keys.COMPONENT_PREFIXES.items():
            tiny_model = build_component(component, tiny_configs[component])
            tiny_keys = host_state_dict(component, tiny_configs[component], tiny_model).keys()
            full = sd15_meta["models"][component]
            full_keys = host_state_dict(component, sd15_meta["configs"][component], full).keys()
            if component == "text_encoder":  # 2 layers instead of 12: names are a subset
                assert tiny_keys <= full_keys
            else:
                assert tiny_keys == full_keys, prefix


def test_key_maps_refuse_unknown_layouts(sd15_meta):
    config = dict(sd15_meta["configs"]["unet"])
    keys = sd15_meta["models"]["unet"].state_dict().keys()
    with pytest.raises(ValueError, match="no counterpart"):
        ldm_keys.unet_key_map(config, [*keys, "add_embedding.linear_1.weight"])
    with pytest.raises(ValueError, match="block type"):
        ldm_keys.unet_key_map(
            {**config, "down_block_types": ["SimpleCrossAttnDownBlock2D"] * 4}, keys
        )
    with pytest.raises(ValueError, match="not one-to-one"):
        ldm_keys.invert_key_map({"a": "x", "b": "x"})


# --- file formats and errors -----------------------------------------------------------------------


def test_fp16_file_loads_in_requested_dtype(tiny_files, tmp_path):
    half = write_tiny_models(tmp_path, seed=SEED, dtype=torch.float16)
    tensors, _ = read_state_dict(half.checkpoint)
    assert all(t.dtype == torch.float16 for t in tensors.values())
    loaded = load_sd15_checkpoint(half.checkpoint, dtype=torch.float32)
    weight = loaded.unet.conv_in.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, tensors["model.diffusion_model.input_blocks.0.0.weight"].float())
    assert loaded.text_encoder.dtype == torch.float32 and loaded.vae.dtype == torch.float32
    controlnet = load_controlnet(half.canny, dtype=torch.float32)
    assert controlnet.dtype == torch.float32


def test_ckpt_loads_with_weights_only(tiny_files, tiny, tmp_path):
    tensors, _ = read_state_dict(tiny_files.checkpoint)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": tensors, "global_step": 1000}, path)
    # Pickles carry no metadata, so the tiny configs must be named.
    loaded = load_sd15_checkpoint(path, config_dir=TINY_CONFIG_DIR)
    assert_same_state(loaded.unet, tiny.unet)
    assert_same_state(loaded.text_encoder, tiny.text_encoder)


class Payload:
    """A pickled object whose unpickling would run code: weights_only must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_python_objects_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused") as error:
        read_state_dict(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_truncated_safetensors_is_named(tiny_files, tmp_path):
    data = tiny_files.checkpoint.read_bytes()
    for name, length in [("half", len(data) // 2), ("header", 100), ("tiny", 4)]:
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data[:length])
        with pytest.raises(CheckpointError) as error:
            load_sd15_checkpoint(path)
        message = str(error.value)
        assert str(path) in message and "download the file again" in message
        if name != "tiny":
            assert "truncated" in message


def test_truncated_ckpt_is_named(tiny_files, tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot be read") as error:
        read_state_dict(path)
    assert str(path) in str(error.value)


def test_text_file_named_safetensors_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_text("This is not a model, just some notes about one.\n" * 20)
    with pytest.raises(CheckpointError, match="not a safetensors file") as error:
        read_state_dict(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", ["model.bin", "model.txt", "model"])
def test_other_extensions_are_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="unsupported model file type"):
        read_state_dict(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_sd15_checkpoint(tmp_path / "absent.safetensors")


FAKE_CHECKPOINTS = {
    SDKind.SDXL: [
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
        "conditioner.embedders.1.model.ln_final.weight",
        "model.diffusion_model.input_blocks.0.0.weight",
    ],
    SDKind.SD2: [
        "cond_stage_model.model.ln_final.weight",
        "model.diffusion_model.input_blocks.0.0.weight",
        "first_stage_model.encoder.conv_in.weight",
    ],
    SDKind.UNKNOWN: ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"],
    SDKind.CONTROLNET: ["control_model.input_hint_block.0.weight"],
}


@pytest.mark.parametrize("kind", list(FAKE_CHECKPOINTS))
def test_other_model_kinds_are_named(tmp_path, kind):
    state = {key: torch.zeros(2) for key in FAKE_CHECKPOINTS[kind]}
    assert detect_sd_kind(state) is kind
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as error:
        load_sd15_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and kind.value in message and "Stable Diffusion 1.5" in message


def test_inpainting_checkpoint_is_named(tiny_files, tmp_path):
    tensors, metadata = read_state_dict(tiny_files.checkpoint)
    key = "model.diffusion_model.input_blocks.0.0.weight"
    tensors[key] = torch.zeros(tensors[key].shape[0], 9, 3, 3)
    path = tmp_path / "inpainting.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="inpainting"):
        load_sd15_checkpoint(path)


def test_sd_checkpoint_is_not_a_controlnet(tiny_files):
    with pytest.raises(CheckpointError, match="Stable Diffusion 1.x checkpoint") as error:
        load_controlnet(tiny_files.checkpoint)
    assert str(tiny_files.checkpoint) in str(error.value)


def test_missing_and_unexpected_tensors_are_counted(tiny_files, tmp_path):
    tensors, metadata = read_state_dict(tiny_files.checkpoint)
    del tensors["model.diffusion_model.out.2.weight"]
    del tensors["model.diffusion_model.out.2.bias"]
    tensors["model.diffusion_model.extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError) as error:
        load_sd15_checkpoint(path)
    message = str(error.value)
    assert "2 UNet tensors are missing" in message and "out.2.weight" in message
    assert "1 unexpected UNet tensors" in message and str(path) in message


def test_stale_position_ids_in_file_are_ignored(tiny_files, tiny, tmp_path):
    tensors, metadata = read_state_dict(tiny_files.checkpoint)
    # Real host files often hold a float, slightly-off copy of the position ids.
    tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = (
        torch.arange(77.0)[None] - 0.01
    )
    path = tmp_path / "with_position_ids.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    loaded = load_sd15_checkpoint(path)
    ids = dict(loaded.text_encoder.named_buffers())
    (position_ids,) = (v for k, v in ids.items() if k.endswith("position_ids"))
    assert torch.equal(position_ids, torch.arange(77)[None])


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model size"):
        write_tiny_models(tmp_path, size="sdxl")


# --- the tiny models run -----------------------------------------------------------------------------


def test_tiny_pipeline_forward(tiny, tiny_files):
    controlnet = load_controlnet(tiny_files.canny)
    ids = tiny.tokenizer(
        ["a photo of a person"], padding="max_length", max_length=77, return_tensors="pt"
    )
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    control_image = torch.rand(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        text = tiny.text_encoder(ids.input_ids)[0]
        assert text.shape == (1, 77, 32)
        down, mid = controlnet(
            latents,
            10,
            encoder_hidden_states=text,
            controlnet_cond=control_image,
            return_dict=False,
        )
        assert len(down) == 12 and mid.shape == (1, 96, 1, 1)
        plain = tiny.unet(latents, 10, encoder_hidden_states=text).sample
        controlled = tiny.unet(
            latents,
            10,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        image = tiny.vae.decode(latents).sample
        encoded = tiny.vae.encode(image).latent_dist.mean
    assert plain.shape == controlled.shape == (1, 4, 8, 8)
    assert torch.isfinite(controlled).all()
    assert not torch.allclose(plain, controlled)  # the ControlNet has a visible effect
    assert image.shape == (1, 3, 64, 64) and encoded.shape == (1, 4, 8, 8)


def test_random_model_is_seeded_and_leaves_global_rng_alone(tiny_configs):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = random_model("text_encoder", tiny_configs["text_encoder"], seed=1)
    assert torch.equal(torch.rand(1), expected_next)
    second = random_model("text_encoder", tiny_configs["text_encoder"], seed=1)
    other = random_model("text_encoder", tiny_configs["text_encoder"], seed=2)
    assert_same_state(first, second)
    assert not torch.equal(first.get_input_embeddings().weight, other.get_input_embeddings().weight)


@pytest.mark.slow
def test_full_size_random_sd15(tmp_path):
    files = write_tiny_models(tmp_path, size="sd15")
    tensors = load_file(str(files.checkpoint))
    assert files.checkpoint.name == "sd15-random.safetensors"
    assert len(tensors) == 686 + 248 + 196
    assert all(t.dtype == torch.float16 for t in tensors.values())
    del tensors
    components = load_sd15_checkpoint(files.checkpoint, dtype=torch.float16)
    assert sum(p.numel() for p in components.unet.parameters()) == 859_520_964
    assert len(load_controlnet(files.tile, dtype=torch.float16).state_dict()) == 340
