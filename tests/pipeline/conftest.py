from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    from easyphoto_core.sd.tiny import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"), seed=0)


def write_random_lora(path: Path, checkpoint: Path, *, rank: int = 4, seed: int = 0,
                      base: str = "sd_v1") -> Path:
    """A kohya LoRA for the tiny model with non-zero random factors (a trained one's stand-in)."""
    from easyphoto_core.lora_format import build_metadata, save_lora
    from easyphoto_core.lora_layers import inject_lora
    from easyphoto_core.sd.loading import load_sd15_checkpoint

    components = load_sd15_checkpoint(checkpoint)
    network = inject_lora(components.unet, components.text_encoder, rank=rank, alpha=rank)
    generator = torch.Generator().manual_seed(seed)
    tensors = network.state_dict_kohya()
    for key, value in tensors.items():
        if key.endswith(".lora_up.weight"):
            tensors[key] = torch.randn(value.shape, generator=generator) * 0.5
    metadata = build_metadata(user_id="someone", rank=rank, alpha=rank, base_model_hash="0",
                              steps=1, score=None, output_name=path.stem)
    metadata["ss_base_model_version"] = base
    save_lora(path, tensors, metadata)
    return path
