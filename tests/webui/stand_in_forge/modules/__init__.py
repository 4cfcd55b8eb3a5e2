"""A small stand-in of the Forge (lllyasviel/stable-diffusion-webui-forge dfdcbab6) modules
EasyPhoto calls, written from Forge's signatures. Forge's `modules` are A1111's with changes:
the files here are Forge's own; every other module comes from the A1111 stand-in."""

from pathlib import Path

__path__.append(str(Path(__file__).resolve().parents[2] / "stand_in_host" / "modules"))
