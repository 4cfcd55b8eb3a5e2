"""SD1.5's text encoder (CLIP ViT-L/14's text tower), parameter for parameter transformers'
`CLIPTextModel` in the host's layout (keys under `text_model.`, as transformers 4.x names them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from easyphoto_core.sd.native.config import ModelConfig


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


class CLIPAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = (split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # CLIP's causal mask
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class CLIPMLP(nn.Module):
    def __init__(self, dim: int, inner: int, activation: str) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"the text encoder config names an activation CLIP's SD1.5 text "
                             f"encoder does not use: {activation}")
        self.activation = ACTIVATIONS[activation]
        self.fc1, self.fc2 = nn.Linear(dim, inner), nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, inner: int, activation: str, eps: float) -> None:
        super().__init__()
        self.self_attn = CLIPAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = CLIPMLP(dim, inner, activation)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, vocab: int, positions: int, dim: int) -> None:
        super().__init__()
        # no random init (the weights are loaded): nn.Embedding's normal_ on the meta device
        # imports torch._dynamo, 1.7 s of the trainer's start-up on the CPU machine
        self.token_embedding = nn.Embedding(vocab, dim, _weight=torch.empty(vocab, dim))
        self.position_embedding = nn.Embedding(positions, dim,
                                               _weight=torch.empty(positions, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[-1], device=ids.device)
        return self.token_embedding(ids) + self.position_embedding(positions)[None]


class CLIPEncoder(nn.Module):
    def __init__(self, layers: list[CLIPEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class CLIPTextTransformer(nn.Module):
    def __init__(self, c: Mapping[str, Any]) -> None:
        super().__init__()
        dim, eps = int(c["hidden_size"]), float(c.get("layer_norm_eps", 1e-5))
        self.embeddings = CLIPEmbeddings(int(c["vocab_size"]), int(c["max_position_embeddings"]),
                                         dim)
        self.encoder = CLIPEncoder([
            CLIPEncoderLayer(dim, int(c["num_attention_heads"]), int(c["intermediate_size"]),
                             str(c.get("hidden_act", "quick_gelu")), eps)
            for _ in range(int(c["num_hidden_layers"]))])
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(ids)
        for layer in self.encoder.layers:
            hidden = layer(hidden)
        return self.final_layer_norm(hidden)


class CLIPTextModel(nn.Module):
    """`model(ids)[0]` is the last hidden state [batch, tokens, dim], as transformers returns."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = ModelConfig(config)
        self.text_model = CLIPTextTransformer(config)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.text_model(input_ids),)
