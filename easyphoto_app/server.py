"""The standalone studio: the EasyPhoto UI and HTTP API on one FastAPI app, no A1111 needed."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from easyphoto_app.api import register_routes
from easyphoto_app.auth import BasicAuthMiddleware, parse_credentials
from easyphoto_app.docs import add_offline_docs
from easyphoto_app.ui import build_ui, client_translations, enable_queue
from easyphoto_core import __version__
from easyphoto_core.context import StudioContext, StudioSettings
from easyphoto_core.i18n import set_default_language
from easyphoto_core.workspace import Workspace, default_workspace_root


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description="EasyPhoto studio (standalone)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--listen", action="store_true",
                        help="listen on every network interface (same as --host 0.0.0.0)")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--workspace", default=None, help="user ids' files (default: "
                        "$EASYPHOTO_WORKSPACE or ./easyphoto_workspace)")
    parser.add_argument("--api-auth", default=None, help='"user:pass,user2:pass2": required for '
                        "everything served (UI, API, docs)")
    parser.add_argument("--base-model", type=Path, help="SD1.5 single-file checkpoint")
    parser.add_argument("--controlnet-dir", type=Path, action="append", default=[],
                        help="folder with the ControlNet 1.1 files (repeatable)")
    parser.add_argument("--lora-dir", type=Path, action="append", default=[],
                        help="also copy trained LoRAs here (repeatable)")
    parser.add_argument("--weights-dir", type=Path, help="downloaded weights (default: weights/)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--lang", default=os.environ.get("EASYPHOTO_LANG") or "en",
                        choices=("en", "zh"), help="language of the UI and of messages "
                        "(zh = 简体中文; default: $EASYPHOTO_LANG or en)")
    return parser.parse_args(argv)


def create_app(context: StudioContext, *, api_auth: str | None = None) -> FastAPI:
    credentials = parse_credentials(api_auth)
    app = FastAPI(title="EasyPhoto", version=__version__, docs_url=None, redoc_url=None)
    add_offline_docs(app)  # /docs and /redoc with no CDN
    if credentials:  # in front of everything: routes, the UI and its gradio API, /docs
        app.add_middleware(BasicAuthMiddleware, credentials=credentials)
    register_routes(app, context, credentials=credentials)
    blocks = build_ui(context)
    client_translations(blocks)  # gradio's own upload words in the studio's language
    enable_queue(blocks)  # the buttons stream their job's progress, several tabs at once
    return mount_ui(app, blocks, context)


def mount_ui(app: FastAPI, blocks: gr.Blocks, context: StudioContext) -> FastAPI:
    """The UI at /, taking files only as uploads.

    gradio (4 to 6) accepts an input file only if it was uploaded — not a server path that a
    client names in an API call — but checks it only once the Blocks count as launched, which
    mount_gradio_app never sets; so we set it. Portraits and reports the UI shows live in the
    workspace, which is therefore an allowed path for outputs (never for inputs).
    """
    extra = {}
    if "allowed_paths" in inspect.signature(gr.mount_gradio_app).parameters:
        extra["allowed_paths"] = [str(context.workspace.root)]
    mounted = gr.mount_gradio_app(app, blocks, path="/", **extra)
    blocks.has_launched = True
    return mounted


# A stop (Ctrl-C, SIGTERM) waits at most this long for open connections: an event that is still
# streaming (a job's progress, the job list) keeps its connection open, and under gradio 3.41
# the browser test's server took the whole 20 s its teardown allows to stop.
GRACEFUL_SHUTDOWN_SECONDS = 5


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # only the standalone server needs it

    args = parse_args(argv)
    set_default_language(args.lang)
    host = "0.0.0.0" if args.listen else args.host
    if host not in ("127.0.0.1", "localhost", "::1") and not parse_credentials(args.api_auth):
        print(f"WARNING: listening on {host} without --api-auth: anyone who can reach this "
              "machine can train, generate and download portraits. Add --api-auth "
              "user:password.", file=sys.stderr)
    settings = StudioSettings(base_model=args.base_model, controlnet_dirs=args.controlnet_dir,
                              lora_copy_dirs=args.lora_dir, weights_dir=args.weights_dir,
                              device=args.device)
    context = StudioContext(Workspace(args.workspace or default_workspace_root()), "diffusers",
                            settings=settings)
    from easyphoto_core.readiness import console_lines

    for line in console_lines(context.missing_models()):  # what a first portrait still needs
        print(line)
    print(f"EasyPhoto studio: http://{host}:{args.port}/  (API under /easyphoto/v1, "
          f"docs at /docs; workspace {context.workspace.root})")
    uvicorn.run(create_app(context, api_auth=args.api_auth), host=host, port=args.port,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
