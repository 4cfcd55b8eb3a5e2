"""The host's own Send-to and paste mechanism for the Generate tab's results.

`bind_results(gallery, infotext_box)` puts the host's "Send to img2img / inpaint / extras"
buttons under our results gallery (`infotext_utils.create_buttons`), registered with the host
like txt2img's (`register_paste_params_button`): the host wires them once every tab exists, sends
the selected portrait and its infotext, and switches tab. `bind_paste(widgets, prompt_box,
button)` registers our fields with the host's paste mechanism, so an infotext pasted into our
prompt box (or read in PNG Info) fills our params.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from easyphoto_app.paste import host_paste_fields

log = logging.getLogger(__name__)
SEND_TO = ("img2img", "inpaint", "extras")
TAB_NAME = "easyphoto"


def _infotext_utils() -> Any:
    """modules.infotext_utils (A1111 1.8+, Forge); generation_parameters_copypaste before;
    None in a host that has neither (the tab then goes without the buttons, and says so)."""
    for name in ("modules.infotext_utils", "modules.generation_parameters_copypaste"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    log.warning("EasyPhoto: this WebUI has no infotext_utils: no Send-to or paste buttons")
    return None


def bind_results(gallery: Any, infotext_box: Any) -> dict[str, Any]:
    """The host's send-to buttons for the selected portrait (in a row where they are made);
    returns them by target tab. `infotext_box` holds the selected portrait's infotext: the host
    parses it into the target tab's fields (prompt, seed, size...) as PNG Info's buttons do."""
    import gradio as gr

    utils = _infotext_utils()
    if utils is None:
        return {}
    with gr.Row(elem_id="easyphoto_send_to"):
        buttons = utils.create_buttons(list(SEND_TO))
    for tabname, button in buttons.items():
        utils.register_paste_params_button(utils.ParamBinding(
            paste_button=button, tabname=tabname, source_text_component=infotext_box,
            source_image_component=gallery))
    return buttons


def add_paste_button(widgets: dict[str, Any]) -> Any:
    """A paste button by our fields: an infotext pasted into our prompt box fills them."""
    import gradio as gr

    from easyphoto_core.i18n import gettext

    if _infotext_utils() is None:
        return None
    button = gr.Button(gettext("Read settings from the prompt box"), size="sm",
                       elem_id="easyphoto_paste")
    bind_paste(widgets, widgets["prompt"], button)
    return button


def bind_paste(widgets: dict[str, Any], prompt_box: Any, button: Any) -> None:
    """Our generation fields on the host's paste mechanism (tab `easyphoto`)."""
    utils = _infotext_utils()
    utils.add_paste_fields(TAB_NAME, None, host_paste_fields(widgets))
    utils.register_paste_params_button(utils.ParamBinding(
        paste_button=button, tabname=TAB_NAME, source_text_component=prompt_box))
