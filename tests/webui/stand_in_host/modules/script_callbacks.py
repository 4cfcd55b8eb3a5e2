"""Stand-in for modules/script_callbacks.py: records what gets registered."""

registered = {"ui_tabs": [], "ui_settings": [], "app_started": [], "script_unloaded": []}


def on_ui_tabs(fn):
    registered["ui_tabs"].append(fn)


def on_ui_settings(fn):
    registered["ui_settings"].append(fn)


def on_app_started(fn):
    registered["app_started"].append(fn)


def on_script_unloaded(fn):
    registered["script_unloaded"].append(fn)
