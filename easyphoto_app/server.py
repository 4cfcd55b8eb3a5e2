"""The standalone studio: the EasyPhoto UI and HTTP API on one FastAPI app, no A1111 needed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from easyphoto_app.api import register_routes
from easyphoto_app.auth import parse_credentials
from easyphoto_app.ui import build_ui
from easyphoto_core import __version__
from easyphoto_core.context import StudioContext, StudioSettings
from easyphoto_core.workspace import Workspace, default_workspace_root


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description="EasyPhoto studio (standalone)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--workspace", default=None, help="user ids' files (default: "
                        "$EASYPHOTO_WORKSPACE or ./easyphoto_workspace)")
    parser.add_argument("--api-auth", default=None, help='"user:pass,user2:pass2" for the API')
    parser.add_argument("--base-model", type=Path, help="SD1.5 single-file checkpoint")
    parser.add_argument("--controlnet-dir", type=Path, action="append", default=[],
                        help="folder with the ControlNet 1.1 files (repeatable)")
    parser.add_argument("--lora-dir", type=Path, action="append", default=[],
                        help="also copy trained LoRAs here (repeatable)")
    parser.add_argument("--weights-dir", type=Path, help="downloaded weights (default: weights/)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return parser.parse_args(argv)


def create_app(context: StudioContext, *, api_auth: str | None = None) -> FastAPI:
    app = FastAPI(title="EasyPhoto", version=__version__)
    register_routes(app, context, credentials=parse_credentials(api_auth))
    blocks = build_ui(context)
    blocks.queue()  # the train/generate buttons stream their job's progress
    return gr.mount_gradio_app(app, blocks, path="/")


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # only the standalone server needs it

    args = parse_args(argv)
    settings = StudioSettings(base_model=args.base_model, controlnet_dirs=args.controlnet_dir,
                              lora_copy_dirs=args.lora_dir, weights_dir=args.weights_dir,
                              device=args.device)
    context = StudioContext(Workspace(args.workspace or default_workspace_root()), "diffusers",
                            settings=settings)
    print(f"EasyPhoto studio: http://{args.host}:{args.port}/  (API under /easyphoto/v1, "
          f"docs at /docs; workspace {context.workspace.root})")
    uvicorn.run(create_app(context, api_auth=args.api_auth), host=args.host, port=args.port)
