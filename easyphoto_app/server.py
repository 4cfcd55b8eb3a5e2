"""The standalone studio: the EasyPhoto UI and HTTP API on one FastAPI app, no A1111 needed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gradio as gr
from fastapi import FastAPI

from easyphoto_app.api import register_routes
from easyphoto_app.auth import parse_credentials
from easyphoto_app.ui import build_ui
from easyphoto_core import __version__
from easyphoto_core.context import StudioContext
from easyphoto_core.workspace import Workspace, default_workspace_root


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description="EasyPhoto studio (standalone)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--workspace", default=None, help="user ids' files (default: "
                        "$EASYPHOTO_WORKSPACE or ./easyphoto_workspace)")
    parser.add_argument("--api-auth", default=None, help='"user:pass,user2:pass2" for the API')
    return parser.parse_args(argv)


def create_app(context: StudioContext, *, api_auth: str | None = None) -> FastAPI:
    app = FastAPI(title="EasyPhoto", version=__version__)
    register_routes(app, context, credentials=parse_credentials(api_auth))
    return gr.mount_gradio_app(app, build_ui(context), path="/")


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # only the standalone server needs it

    args = parse_args(argv)
    context = StudioContext(Workspace(args.workspace or default_workspace_root()), "diffusers")
    print(f"EasyPhoto studio: http://{args.host}:{args.port}/  (API under /easyphoto/v1, "
          f"docs at /docs; workspace {context.workspace.root})")
    uvicorn.run(create_app(context, api_auth=args.api_auth), host=args.host, port=args.port)
