"""A model's config as diffusers exposes it: a mapping that also reads as attributes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class ModelConfig(Mapping[str, Any]):
    """Read-only: `config["scaling_factor"]` and `config.scaling_factor` alike."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None
