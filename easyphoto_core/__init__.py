"""EasyPhoto core: face LoRA training and portrait generation, free of any host or UI.

Nothing in this package imports AUTOMATIC1111's `modules`, gradio or fastapi (a test checks it);
the host and UI layers (easyphoto_webui, easyphoto_app) build on it.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

# models/ (configs, tokenizer files, small data) sits beside the package in the extension folder.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "models"
