"""Restoring our params from a portrait's infotext, both ways the user can ask for it.

- In AUTOMATIC1111: `host_paste_fields(widgets)` is the `fields` list of the host's
  `infotext_utils.add_paste_fields("easyphoto", None, fields)` / `ParamBinding`, so its own paste
  button (and PNG Info's text) fills our tab the way it fills txt2img.
- Standalone: a "Load settings from image" upload whose handler is `load_settings_handler`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from easyphoto_app import compat
from easyphoto_core import infotext
from easyphoto_core.i18n import gettext, translate_message
from easyphoto_core.params import GenerateParams, params_to_dict


def host_paste_fields(widgets: dict[str, Any]) -> list[tuple[Any, str]]:
    """(component, infotext key) for each generation widget: what the host's paste reads."""
    keys = infotext.field_keys(GenerateParams)
    return [(widget, keys[name]) for name, widget in widgets.items() if name in keys]


def settings_from_image(path: Any) -> tuple[dict[str, Any], list[str]]:
    """Field values and user ids from an image's infotext (ValueError in the user's words)."""
    try:
        text = infotext.read_infotext(path)
    except OSError:
        raise ValueError(gettext("This file is not an image EasyPhoto can read.")) from None
    if not text:
        raise ValueError(gettext("This image carries no generation settings."))
    params, user_ids = infotext.generate_params(text)
    return params_to_dict(params), user_ids


def load_settings_handler(names: list[str]) -> Callable[[Any], list[Any]]:
    """Handler: uploaded image -> one update per widget in `names`, then the status line."""

    def handler(upload: Any) -> list[Any]:
        paths = compat.file_paths(upload)
        if not paths:
            return [gr.update() for _ in names] + [gr.update(value="")]
        try:
            values, user_ids = settings_from_image(paths[0])
        except ValueError as error:
            return [gr.update() for _ in names] + [gr.update(value=translate_message(str(error)))]
        status = gettext("Settings loaded from the image (user ids: {user_ids}).",
                         user_ids=", ".join(user_ids) or "-")
        return [gr.update(value=values[name]) if name in values else gr.update()
                for name in names] + [gr.update(value=status)]

    return handler
