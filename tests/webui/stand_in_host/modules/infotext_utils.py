"""Stand-in for modules/infotext_utils.py (A1111 1.10.1, 82a973c0): the paste registry our tab
uses, with the host's signatures. What the host does with a binding once every tab exists
(connect_paste_params_buttons) is kept to what decides what a Send-to button sends: the
gallery's image and, from `source_text_component`, the infotext parsed into the target tab's
fields by `parse_generation_parameters` (its prompt / negative prompt / last-line grammar)."""

import re
import sys

import gradio as gr

sys.modules["modules.generation_parameters_copypaste"] = sys.modules[__name__]  # the old name

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")


class ParamBinding:
    def __init__(self, paste_button, tabname, source_text_component=None,
                 source_image_component=None, source_tabname=None,
                 override_settings_component=None, paste_field_names=None):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


class PasteField(tuple):
    def __new__(cls, component, target, *, api=None):
        return super().__new__(cls, (component, target))

    def __init__(self, component, target, *, api=None):
        super().__init__()
        self.api = api
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None


paste_fields: dict = {}
registered_param_bindings: list = []


def reset():
    paste_fields.clear()
    registered_param_bindings.clear()


def add_paste_fields(tabname, init_img, fields, override_settings_component=None):
    if fields:
        for i in range(len(fields)):
            if not isinstance(fields[i], PasteField):
                fields[i] = PasteField(*fields[i])
    paste_fields[tabname] = {"init_img": init_img, "fields": fields,
                             "override_settings_component": override_settings_component}


def create_buttons(tabs_list):
    return {tab: gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab") for tab in tabs_list}


def register_paste_params_button(binding):
    registered_param_bindings.append(binding)


def parse_generation_parameters(x: str):
    """The host's parser without its option-dependent defaults (styles, hires, RNG...)."""
    res = {}
    prompt, negative_prompt, done_with_prompt = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt
    for k, v in re_param.findall(lastline):
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res
