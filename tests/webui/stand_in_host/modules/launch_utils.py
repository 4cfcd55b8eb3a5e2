"""Stand-in for modules/launch_utils.py: the version the host shows."""


def git_tag():
    return "v1.10.1"
