"""The EasyPhoto tab: Train, Generate and the job list, built from the params models.

One UI for gradio 3.41 (AUTOMATIC1111 1.10) and gradio 4-6 (Forge, standalone `app.py`): the few
differences live in `compat`. Labels, defaults and bounds of the parameters come from
`easyphoto_core.params`; every other string from `labels`. A job's progress is read from the
studio's job store, so a reload or a second browser tab finds the running job and follows it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from easyphoto_app import compat, first_run, ui_generate, ui_jobs, ui_train
from easyphoto_app.labels import GRADIO_TEXT, text
from easyphoto_core import PROJECT_ROOT
from easyphoto_core.context import StudioContext
from easyphoto_core.i18n import gettext

STYLE_FILE = PROJECT_ROOT / "style.css"


def with_jobs(context: StudioContext, handler: Callable[..., Iterator[tuple[Any, ...]]]
              ) -> Callable[..., Iterator[tuple[Any, ...]]]:
    """The handler's outputs plus the job list, so the list moves with the followed job."""

    @functools.wraps(handler)
    def wrapped(*args: Any) -> Iterator[tuple[Any, ...]]:
        for outputs in handler(*args):
            yield (*outputs, ui_jobs.jobs_table(context))

    return wrapped


def _style() -> str:
    """The tab's CSS inline: A1111 injects style.css itself, the standalone app does not."""
    return f"<style>{STYLE_FILE.read_text(encoding='utf-8')}</style>" if STYLE_FILE.is_file() else ""


def build_ui(context: StudioContext) -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False, title="EasyPhoto") as blocks:
        gr.HTML(_style(), visible=True, elem_id="easyphoto_style")
        missing = first_run.banner(context)  # above the tabs: what a first portrait needs
        downloads = first_run.downloads_panel(context, missing)  # download, or a path
        with gr.Tab(text("tab_train"), elem_id="easyphoto_train_tab"):
            train = ui_train.build_train_tab(context)
        with gr.Tab(text("tab_generate"), elem_id="easyphoto_generate_tab"):
            generate = ui_generate.build_generate_tab(context)
        with gr.Tab(text("tab_about"), elem_id="easyphoto_about_tab"):
            gr.JSON(value=context.describe(), label="EasyPhoto")
        jobs_table, _ = ui_jobs.build_jobs_panel(context)
        _wire(context, blocks, train, generate, jobs_table)
        blocks.load(functools.partial(first_run.refresh, context), inputs=[],
                    outputs=[missing, *downloads],
                    **compat.quick())
    return blocks


def _wire(context: StudioContext, blocks: gr.Blocks, train: ui_train.TrainTab,
          generate: ui_generate.GenerateTab, jobs_table: Any) -> None:
    ui_train.wire_train_tab(context, train)
    ui_generate.wire_generate_tab(context, generate)
    refresh_ids = functools.partial(_refresh_user_ids, context)
    # a finished training adds a user id: the Generate tab offers it at once
    train.start.click(with_jobs(context, ui_train.start_handler(context, list(train.params))),
                      inputs=[train.user_id, train.photos, *train.params.values()],
                      outputs=[*train.follow_outputs(), jobs_table], **compat.streaming()
                      ).then(refresh_ids, inputs=generate.user_ids, outputs=generate.user_ids)
    generate.generate.click(
        with_jobs(context, ui_generate.generate_handler(context, list(generate.params))),
        inputs=[generate.template, generate.batch, *generate.user_ids,
                *generate.params.values()],
        outputs=[*generate.follow_outputs(), jobs_table], **compat.streaming())
    # a reload or a second tab: fill the user ids, then reattach to the newest jobs
    blocks.load(refresh_ids, inputs=generate.user_ids, outputs=generate.user_ids,
                **compat.quick())
    blocks.load(with_jobs(context, ui_train.attach_handler(context)), inputs=[],
                outputs=[*train.follow_outputs(), jobs_table], **compat.streaming()
                ).then(refresh_ids, inputs=generate.user_ids, outputs=generate.user_ids)
    blocks.load(with_jobs(context, ui_generate.attach_handler(context)), inputs=[],
                outputs=[*generate.follow_outputs(), jobs_table], **compat.streaming())


def _refresh_user_ids(context: StudioContext, *current: str) -> list[Any]:
    return ui_generate.dropdown_updates(context, None, list(current))


# Replaces whole text nodes equal to a key, now and as gradio draws or redraws them.
_TRANSLATE_SCRIPT = """() => {
  const words = %s;
  const fix = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const key = node.textContent.trim();
      if (Object.hasOwn(words, key)) node.textContent = node.textContent.replace(key, words[key]);
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) fix(text);
  };
  fix(document.body);
  new MutationObserver((changes) => changes.forEach((change) => {
    if (change.type === "characterData") fix(change.target);
    change.addedNodes.forEach(fix);
  })).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def client_translations(blocks: gr.Blocks) -> None:
    """The standalone page in the studio's language: gradio writes its own words (an upload
    area's "Drop File Here - or - Click to Upload") in the browser's language, whatever
    `app.py --lang` says; a small script puts ours in their place. Inside A1111 the host's
    localization file does this (localizations/zh_CN.json)."""
    words = {word: gettext(word) for word in GRADIO_TEXT}
    if all(english == shown for english, shown in words.items()):
        return
    script = _TRANSLATE_SCRIPT % json.dumps(words, ensure_ascii=False)
    with blocks:
        blocks.load(None, inputs=None, outputs=None, **compat.client_script(script))


def enable_queue(blocks: gr.Blocks) -> gr.Blocks:
    """Queue the standalone app's events so that several tabs follow jobs at once."""
    return blocks.queue(**compat.queue_options())
