"""The banner above the EasyPhoto tabs: what a first portrait still needs, and how to get it.

Shown at once when the page opens (not after an upload fails), from the same list as
`GET /easyphoto/v1/version` and the console (easyphoto_core.readiness); hidden when nothing is
missing. `ui.py` calls `banner(context)` before its tabs.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from easyphoto_core.i18n import gettext


def banner_markdown(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    lines = [gettext("**Before a first portrait, EasyPhoto needs:**")]
    lines += [f"- {item['message']}" for item in items]
    return "\n".join(lines)


def banner(context: Any) -> gr.Markdown:
    """A Markdown block, refreshed on every page load (a file put in place meanwhile counts)."""
    block = gr.Markdown(banner_markdown(context.missing_models()),
                        elem_id="easyphoto-first-run", visible=bool(context.missing_models()))
    return block


def refresh(context: Any) -> Any:
    """The banner's update for a page load."""
    items = context.missing_models()
    return gr.update(value=banner_markdown(items), visible=bool(items))
