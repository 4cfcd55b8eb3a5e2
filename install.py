"""AUTOMATIC1111 install hook: add what requirements.txt lists and the host lacks, change nothing.

A1111 (and Forge) run this file as a subprocess at every start (cwd = the webui root, `import
launch` works). Three rules, each learnt on a real A1111 1.10.1 (../shared/hosts/README.md):

1. Only add. Every pip call gets a constraints file that holds every installed distribution at
   its installed version, so pip can add packages but never upgrade or downgrade one the host
   owns (an unheld `pip install diffusers` moved huggingface_hub 0.36.2 -> 2.4.0 and safetensors,
   and the WebUI then loaded no checkpoint at all).
2. Add what imports there. pip cannot know that a diffusers release fails to import under the
   host's transformers (diffusers declares no transformers or torch need), so COMPATIBLE_RELEASES
   narrows what we ask for by the host's versions. If nothing fits, nothing is installed and the
   console says what to upgrade, with the command.
3. Prove it. After installing (or when the host's packages changed since the last proof) the
   imports of the tab, the trainer and the generation path are run in a subprocess of this
   Python (`easyphoto_core.environment`); a failure is printed with the package, the error and
   the fix. When nothing is missing and nothing changed this file ends in a few tens of ms (measured
   on a real A1111 venv of 159 distributions, outside `import launch`'s own 0.55 s).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

try:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:  # every pip vendors packaging; A1111's venv also has it as a package
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "requirements.txt"
# Fingerprint of the host's packages at the last successful import check (gitignored).
PROOF_STAMP = ROOT / ".install-checked.json"
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")

# The releases of a package we add, newest line first, each with what it needs of the host's
# packages to *import*. pip already enforces what a package declares (diffusers' huggingface_hub
# and safetensors floors) against the held versions; these rows add what no metadata says.
# Measured by importing easyphoto_core.environment's checks in venvs of the real host's packages
# (A1111 1.10.1's pip freeze: transformers 4.30.2, huggingface_hub 0.36.2, safetensors 0.4.2):
#   with torch 2.1.2 (a user's A1111): diffusers 0.33.1, 0.34.0, 0.35.2 import; 0.36.0 fails
#     ("module 'torch' has no attribute 'xpu'");
#   with torch 2.13.0: 0.34.0-0.36.0 import; 0.37.1 fails ("cannot import name
#     'Dinov2WithRegistersConfig' from 'transformers'") and imports under transformers 4.48.3.
# 0.36 is kept off transformers < 4.48 too, so CI's A1111 venv (CPU torch 2.13) gets the release a
# user's torch-2.1.2 A1111 gets.
COMPATIBLE_RELEASES: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "diffusers": (
        (">=0.36", {"transformers": ">=4.48", "torch": ">=2.4"}),
        (">=0.27,<0.36", {"transformers": ">=4.30.2"}),
    ),
}


@dataclass(frozen=True)
class Requirement:
    line: str  # what requirements.txt says, e.g. "diffusers>=0.27"
    name: str  # distribution name
    import_name: str | None  # a module whose presence also satisfies it
    pip_flags: str  # e.g. "--no-deps"

    @property
    def specifier(self) -> str:
        return self.line[len(self.name):].strip()


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


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """{canonical name: version} of everything installed in this Python, first on sys.path wins.

    Read from the `name-version.dist-info` / `.egg-info` entries pip writes: parsing every
    METADATA through importlib.metadata took 1.4-2.2 s for the 159 distributions of a real
    A1111 venv (A1111 runs this file at every start); the entry names give the same dict in a
    few ms. An entry whose name carries no version is read the slow way.
    """
    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            entries = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            stem, _, kind = entry.rpartition(".")
            if kind not in ("dist-info", "egg-info"):
                continue
            name, _, version = stem.partition("-")
            version = version.split("-py")[0]  # legacy eggs: name-1.0-py3.11.egg-info
            if not version:
                dist = importlib.metadata.Distribution.at(os.path.join(folder or ".", entry))
                name, version = dist.metadata["Name"] or name, dist.version
            if name and version:
                found.setdefault(canonical(name), version)
    return found


def held_constraints(installed: dict[str, str]) -> str:
    """A pip constraints file that pins every installed distribution where it is."""
    lines = [f"{name}=={version}" for name, version in sorted(installed.items())
             if _parses(version)]
    return "\n".join(lines) + "\n"


def _parses(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def installed_version(requirement: Requirement, installed: dict[str, str]) -> str | None:
    """The installed version, 'present' if only the import name resolves, None if missing."""
    version = installed.get(canonical(requirement.name))
    if version is not None:
        return version
    if requirement.import_name and importlib.util.find_spec(requirement.import_name):
        return "present"
    return None


@dataclass(frozen=True)
class Plan:
    install: list[tuple[Requirement, str]]  # (requirement, what pip gets)
    problems: list[str]  # why nothing can be installed, each with the command that fixes it


def _satisfies(version: str | None, specifier: str) -> bool:
    return version is not None and _parses(version) and Version(version) in SpecifierSet(
        specifier, prereleases=True)


def compatible_line(requirement: Requirement, installed: dict[str, str]) -> str | None:
    """What pip should get for a missing requirement on this host, or None if nothing fits."""
    releases = COMPATIBLE_RELEASES.get(canonical(requirement.name))
    if releases is None:
        return requirement.line
    for specifier, needs in releases:
        if all(installed.get(canonical(host)) is None  # absent: pip adds a fitting one
               or _satisfies(installed[canonical(host)], need) for host, need in needs.items()):
            combined = SpecifierSet(requirement.specifier) & SpecifierSet(specifier)
            return requirement.name + ",".join(sorted({str(s) for s in combined}))
    return None


def plan_install(requirements: Iterable[Requirement], installed: dict[str, str]) -> Plan:
    install, problems = [], []
    for requirement in requirements:
        version = installed_version(requirement, installed)
        if version == "present":
            continue
        if version is not None:
            if requirement.specifier and not _satisfies(version, requirement.specifier):
                problems.append(_upgrade_message(requirement.name, version, requirement.line))
            continue
        line = compatible_line(requirement, installed)
        if line is None:
            problems.append(_no_release_message(requirement, installed))
        else:
            install.append((requirement, line))
    return Plan(install, problems)


def _upgrade_message(name: str, version: str, wanted: str) -> str:
    return (f"EasyPhoto needs {wanted}; this WebUI has {name} {version}. Upgrading it may affect "
            f"the WebUI and other extensions; if you choose to, run:\n"
            f'    "{sys.executable}" -m pip install "{wanted}"')


def _no_release_message(requirement: Requirement, installed: dict[str, str]) -> str:
    oldest_needs = COMPATIBLE_RELEASES[canonical(requirement.name)][-1][1]
    host, need = next((h, n) for h, n in oldest_needs.items()
                      if not _satisfies(installed.get(canonical(h)), n))
    return (f"No release of {requirement.name} imports with this WebUI's {host} "
            f"{installed.get(canonical(host))}: EasyPhoto needs {host}{need}. Upgrading it may "
            f"affect the WebUI and other extensions; if you choose to, run:\n"
            f'    "{sys.executable}" -m pip install "{host}{need}"\n'
            f"then restart the WebUI.")


def install(plan: Plan, installed: dict[str, str], run_pip: Callable[[str, str], object],
            log: Callable[[str], None] = print) -> list[str]:
    """Run pip for each planned requirement, every installed package held; return what failed.

    A plan with problems (a host package too old for anything we could add) installs nothing:
    half an install would leave the tab failing later with a worse message.
    """
    for problem in plan.problems:
        log(f"[EasyPhoto] {problem}")
    if plan.problems:
        return [requirement.line for requirement, _ in plan.install] or ["(nothing installed)"]
    failed = []
    with tempfile.TemporaryDirectory(prefix="easyphoto-install-") as folder:
        constraints = Path(folder) / "held.txt"
        constraints.write_text(held_constraints(installed), encoding="utf-8")
        for flags, lines in _by_flags(plan.install).items():
            # one pip call per flag set: each call costs ~25 s of resolving on a real host
            quoted = " ".join(f'"{line}"' for line in lines)
            args = " ".join(filter(None, ["install", flags, f'-c "{constraints}"', quoted]))
            try:
                run_pip(args, f"EasyPhoto requirements: {', '.join(lines)}")
            except Exception as error:  # launch.run_pip raises RuntimeError with pip's output
                failed.extend(lines)
                log(f"[EasyPhoto] Could not install {', '.join(lines)} without changing the "
                    f"WebUI's packages: {str(error).strip()[-800:]}\n"
                    f"[EasyPhoto] Install by hand in the WebUI's venv:\n"
                    f'    "{sys.executable}" -m pip freeze > HELD.txt\n'
                    f'    "{sys.executable}" -m pip {args.replace(str(constraints), "HELD.txt")}')
    return failed


def _by_flags(planned: list[tuple[Requirement, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for requirement, line in planned:
        groups.setdefault(requirement.pip_flags, []).append(line)
    return groups


def environment_fingerprint(installed: dict[str, str]) -> str:
    text = json.dumps(sorted(installed.items())) + REQUIREMENTS.read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


def prove_imports(log: Callable[[str], None] = print) -> bool:
    """Import what the extension runs, in a subprocess of this Python; report each failure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "easyphoto_core.environment", "--json", "--ui"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    try:
        failures = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        log(f"[EasyPhoto] The import check itself failed: {result.stderr.strip()[-800:]}")
        return False
    for failure in failures:
        log(f"[EasyPhoto] {failure['distribution']} {failure['version'] or '(not installed)'} "
            f"does not import: {failure['module']}: {failure['error']}\n"
            f"[EasyPhoto] EasyPhoto needs it for {failure['needed_for']}. "
            f"{_fix_for(failure['distribution'])}")
    return not failures


def _fix_for(distribution: str) -> str:
    installed = installed_distributions()
    requirement = next((r for r in parse_requirements(REQUIREMENTS.read_text(encoding="utf-8"))
                        if canonical(r.name) == canonical(distribution)), None)
    line = compatible_line(requirement, installed) if requirement else None
    if line is None:
        return "Reinstall the WebUI's own packages (or report this at the EasyPhoto repository)."
    return (f"Replace it with a release that fits this WebUI:\n"
            f'    "{sys.executable}" -m pip install "{line}" --force-reinstall --no-deps\n'
            f"then restart the WebUI.")


def main(run_pip: Callable[[str, str], object], *, skip_install: bool,
         log: Callable[[str], None] = print) -> int:
    requirements = parse_requirements(REQUIREMENTS.read_text(encoding="utf-8"))
    installed = installed_distributions()
    if skip_install:
        missing = [r.line for r in requirements if installed_version(r, installed) is None]
        if missing:
            log("[EasyPhoto] --skip-install: not installing " + ", ".join(missing)
                + "; the EasyPhoto tab will say what is missing.")
        return 0
    plan = plan_install(requirements, installed)
    if plan.problems or plan.install:
        if install(plan, installed, run_pip, log):
            return 1
        after = installed_distributions()
    else:
        after = installed
    fingerprint = environment_fingerprint(after)
    if after == installed and _stamp() == fingerprint:
        return 0  # nothing added and nothing changed since the last proof: the fast path
    if not prove_imports(log):
        return 1
    log("[EasyPhoto] Checked: the tab, the trainer and generation import in this WebUI"
        + (f" (added {', '.join(_added(installed, after))})." if after != installed else "."))
    _write_stamp(fingerprint)
    return 0


def _added(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"{name} {version}" for name, version in sorted(after.items()) if name not in before]


def _stamp() -> str | None:
    try:
        return json.loads(PROOF_STAMP.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return None


def _write_stamp(fingerprint: str) -> None:
    partial = PROOF_STAMP.with_name(PROOF_STAMP.name + ".partial")
    partial.write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    os.replace(partial, PROOF_STAMP)


def _host_launch():
    import launch  # only importable inside A1111's (or Forge's) start-up

    return launch


if __name__ == "__main__":  # A1111 runs `python install.py` in its venv
    launch = _host_launch()
    main(launch.run_pip, skip_install=bool(getattr(launch.args, "skip_install", False)))
