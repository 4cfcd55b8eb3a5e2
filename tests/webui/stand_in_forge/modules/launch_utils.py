"""Stand-in for Forge's modules/launch_utils.py: the version the host shows."""

from modules_forge import forge_version


def git_tag():
    return "f" + forge_version.version + "-v1.10.1"
