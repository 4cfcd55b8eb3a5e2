"""AUTOMATIC1111 install hook: pip-install what requirements.txt lists and the host lacks.

A1111 runs this file as a subprocess at start-up (cwd = the webui root, `import launch` works).
It never upgrades or downgrades a package the host already has (torch, transformers, numpy,
pydantic, gradio, protobuf, mediapipe...): a newer numpy or protobuf breaks the host and its other
extensions. A failed install is reported with the command to run by hand; it never stops the host.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Requirement:
    line: str  # what pip gets, e.g. "diffusers>=0.27"
    name: str  # distribution name
    import_name: str | None  # a module whose presence also satisfies it
    pip_flags: str  # e.g. "--no-deps"


def parse_requirements(text: str) -> list[Requirement]:
    requirements = []
    for raw in text.splitlines():
        spec, _, comment = raw.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        flags = " ".join(part for part in spec.split() if part.startswith("--"))
        spec = " ".join(part for part in spec.split() if not part.startswith("--"))
        hint = re.search(r"import:\s*([A-Za-z0-9_.]+)", comment)
        requirements.append(
            Requirement(spec, _NAME.match(spec).group(1), hint.group(1) if hint else None, flags)
        )
    return requirements


def installed_version(requirement: Requirement) -> str | None:
    """The installed version, 'present' if only the import name resolves, None if missing."""
    try:
        return importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        pass
    if requirement.import_name and importlib.util.find_spec(requirement.import_name):
        return "present"
    return None


def install_missing(
    requirements: list[Requirement],
    run_pip: Callable[[str, str], object],
    log: Callable[[str], None] = print,
) -> list[str]:
    """Install each missing requirement; return the ones that failed (already reported)."""
    failed = []
    for requirement in requirements:
        version = installed_version(requirement)
        if version is not None:
            continue  # the host's version wins, even if older: never touch host packages
        args = f'install {requirement.pip_flags} "{requirement.line}"'.replace("  ", " ")
        try:
            run_pip(args, f"EasyPhoto requirement: {requirement.line}")
        except Exception as error:  # launch.run_pip raises RuntimeError with pip's output
            failed.append(requirement.line)
            log(
                f"[EasyPhoto] Could not install {requirement.line}: {str(error).strip()[:500]}\n"
                f"[EasyPhoto] Install it by hand in the WebUI's venv:\n"
                f'    "{sys.executable}" -m pip {args}'
            )
    return failed


def _host_run_pip() -> Callable[[str, str], object]:
    import launch  # only importable inside A1111's start-up

    return launch.run_pip


if __name__ == "__main__":  # A1111 runs `python install.py` in its venv
    install_missing(parse_requirements(REQUIREMENTS.read_text()), _host_run_pip())
