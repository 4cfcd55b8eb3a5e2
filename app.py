"""Standalone EasyPhoto studio: `python app.py [--port 7861] [--workspace DIR]`."""

from __future__ import annotations

from easyphoto_app.server import main

if __name__ == "__main__":
    main()
