"""The only file AUTOMATIC1111 loads from this extension: it registers callbacks, nothing else."""

from __future__ import annotations

from modules import script_callbacks

try:
    # Imported at top level: the extension folder is on sys.path only while this file executes.
    from easyphoto_webui.integration import WebuiIntegration
except ImportError as error:  # e.g. started with --skip-prepare-environment
    print(
        f"[EasyPhoto] disabled: missing dependency '{error.name}'. Restart the WebUI without "
        f"--skip-install, or run: python -m pip install -r extensions/<this folder>/requirements.txt"
    )
else:
    integration = WebuiIntegration()
    script_callbacks.on_ui_tabs(integration.on_ui_tabs)
    script_callbacks.on_ui_settings(integration.on_ui_settings)
    script_callbacks.on_app_started(integration.on_app_started)
    script_callbacks.on_script_unloaded(integration.on_script_unloaded)
