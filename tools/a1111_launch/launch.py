"""Stand-in for AUTOMATIC1111 1.10.1's `launch` module, as install.py sees it: `args`, `run_pip`.

tools/test.sh a1111 puts this folder on PYTHONPATH and runs our install.py the way the WebUI's
prepare_environment does, so its pip calls are exactly the host's (modules/launch_utils.py at
82a973c0: `run` with shell=True and captured output, RuntimeError with pip's output on failure;
`run_pip` is a no-op under --skip-install and adds --prefer-binary and INDEX_URL).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

python = sys.executable
index_url = os.environ.get("INDEX_URL", "")
_parser = argparse.ArgumentParser(add_help=False)
_parser.add_argument("--skip-install", action="store_true")
args, _ = _parser.parse_known_args(shlex.split(os.environ.get("COMMANDLINE_ARGS", "")))


def run(command: str, desc: str | None = None, errdesc: str | None = None,
        custom_env: dict | None = None, live: bool = False) -> str:
    if desc is not None:
        print(desc)
    run_kwargs = {"args": command, "shell": True, "encoding": "utf8", "errors": "ignore",
                  "env": os.environ if custom_env is None else custom_env}
    if not live:
        run_kwargs["stdout"] = run_kwargs["stderr"] = subprocess.PIPE
    result = subprocess.run(**run_kwargs)
    if result.returncode != 0:
        error_bits = [f"{errdesc or 'Error running command'}.", f"Command: {command}",
                      f"Error code: {result.returncode}"]
        if result.stdout:
            error_bits.append(f"stdout: {result.stdout}")
        if result.stderr:
            error_bits.append(f"stderr: {result.stderr}")
        raise RuntimeError("\n".join(error_bits))
    return result.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = False) -> str | None:
    if args.skip_install:
        return None
    index_url_line = f" --index-url {index_url}" if index_url != "" else ""
    return run(f'"{python}" -m pip {command} --prefer-binary{index_url_line}',
               desc=f"Installing {desc}", errdesc=f"Couldn't install {desc}", live=live)
