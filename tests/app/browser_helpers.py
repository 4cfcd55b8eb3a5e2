"""Driving the EasyPhoto tab in headless Chromium (Debian's package) through Playwright.

The browser is the system's (`/usr/bin/chromium`, or $EASYPHOTO_CHROMIUM): Playwright never
downloads one. Selectors use our element ids and plain roles, so the same helpers work under
gradio 3.41 (AUTOMATIC1111) and the newest gradio (standalone app).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("EASYPHOTO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("EASYPHOTO_SCREENSHOTS", REPO / "tests" / "artifacts"
                                  / "screenshots"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def studio_server(*, models: Any, workspace: Path, weights_dir: Path, log: Path) -> Iterator[str]:
    """`python app.py` on the tiny models, on a free local port; its URL until the block ends."""
    port = free_port()
    command = [sys.executable, "app.py", "--port", str(port), "--device", "cpu",
               "--base-model", str(models.checkpoint), "--controlnet-dir",
               str(models.checkpoint.parent), "--weights-dir", str(weights_dir),
               "--workspace", str(workspace)]
    env = {**os.environ, "EASYPHOTO_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: _answers(port) or server.poll() is not None, 120,
                   f"the studio to listen on port {port}")
        if server.poll() is not None:
            raise AssertionError(f"app.py exited with {server.returncode}:\n{log.read_text()}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/easyphoto/v1/version", timeout=2):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], Any], timeout: float, what: str | Callable[[], str],
               interval: float = 0.25) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    what = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- page helpers ----------------------------------------------------------------------------


def open_tab(page: Any, name: str) -> None:
    tabs = page.locator("[role=tab], .tab-nav > button")
    tabs.filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")).first.click()


def open_accordion(page: Any, elem_id: str) -> None:
    """Open the accordion `elem_id` (its children are not rendered while it is closed)."""
    accordion = page.locator(f"#{elem_id}")
    header = accordion.locator(".label-wrap").first
    if "open" not in (header.get_attribute("class") or ""):
        header.click()


def text_input(page: Any, elem_id: str) -> Any:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input[type=text]").first


def set_number(page: Any, elem_id: str, value: float) -> None:
    """A slider's or number box's value, typed into its number field."""
    field = page.locator(f"#{elem_id} input[type=number]").first
    field.fill(str(value))
    field.press("Enter")
    field.blur()


def set_checkbox(page: Any, elem_id: str, checked: bool) -> None:
    box = page.locator(f"#{elem_id} input[type=checkbox]").first
    if box.is_checked() != checked:
        box.click()


def choose(page: Any, elem_id: str, option: str) -> None:
    """Pick `option` in the dropdown `elem_id`."""
    page.locator(f"#{elem_id} input").first.click()
    options = page.locator("ul.options li, [role=option]")
    # an option's text may start with the ✓ mark of the selected one
    options.filter(has_text=re.compile(rf"^[\s✓]*{re.escape(option)}\s*$")).first.click()


def dropdown_value(page: Any, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input").first.input_value()


class EventSockets:
    """gradio 3.41 runs each queued event over its own websocket. An upload made while an
    event of the page is still running is lost there (the file list stays at "Uploading..."),
    so uploads wait until every event socket has closed. gradio 4+ uses no websockets."""

    def __init__(self, page: Any) -> None:
        self.opened = self.closed = self.generation = 0
        page.on("websocket", self._opened)
        # a reload leaves the old document's sockets without a close event: count afresh
        page.on("framenavigated", lambda frame: self._reset() if frame == page.main_frame
                else None)

    def _reset(self) -> None:
        self.generation += 1
        self.opened = self.closed = 0

    def _opened(self, socket: Any) -> None:
        self.opened += 1
        generation, done = self.generation, []  # ends with "process_completed" (or a close)

        def finish() -> None:
            if not done and generation == self.generation:
                done.append(True)
                self.closed += 1

        socket.on("framereceived",
                  lambda payload: finish() if "process_completed" in str(payload) else None)
        socket.on("close", lambda _: finish())

    def idle(self) -> bool:
        return self.opened == self.closed


SOCKETS: dict[int, EventSockets] = {}


# CSS animations off in every document the page loads: gradio animates its loading indicators
# for as long as an event streams, and software rendering repainted them at ~0.5 of a core per
# browser, a third of the machine while a job ran (nothing asserted here moves).
STILL_PAGES = (
    "document.addEventListener('DOMContentLoaded', () => {"
    " const style = document.createElement('style');"
    " style.textContent = '*, *::before, *::after { animation: none !important;"
    " transition: none !important; }';"
    " document.head.appendChild(style); });")


def open_page(page: Any, url: str) -> None:
    """Load the studio and wait until its load events (reattach, user ids) have run."""
    if id(page) not in SOCKETS:
        page.add_init_script(STILL_PAGES)
    sockets = SOCKETS.setdefault(id(page), EventSockets(page))
    page.goto(url)
    page.wait_for_selector("#easyphoto_train_button")
    if page.evaluate("() => ((window.gradio_config || {}).version || '')").startswith("3"):
        wait_until(lambda: _pumped(page) and sockets.opened >= 2, 60,
                   "the page's load events to start")
    wait_until(lambda: _pumped(page) and sockets.idle(), 120, "the page's load events to end")


def _pumped(page: Any) -> bool:
    """Let Playwright deliver pending events (its sync API does so only inside its calls)."""
    page.wait_for_timeout(100)
    return True


def upload(page: Any, elem_id: str, files: list[Path]) -> None:
    sockets = SOCKETS.get(id(page))
    if sockets is not None:
        wait_until(lambda: _pumped(page) and sockets.idle(), 120,
                   "the page's running events to end before an upload")
    page.locator(f"#{elem_id} input[type=file]").first.set_input_files([str(f) for f in files])


def inner_text(page: Any, elem_id: str) -> str:
    locator = page.locator(f"#{elem_id}")
    return locator.first.inner_text() if locator.count() else ""


def gallery_images(page: Any, elem_id: str) -> int:
    """Thumbnails shown in the gallery `elem_id` (its grid, not the preview)."""
    return page.locator(f"#{elem_id} .thumbnail-item img, #{elem_id} .thumbnail-item video").count()


def progress(page: Any, elem_id: str) -> dict[str, str]:
    """The progress bar's state, stage, job id, percent and text."""
    bar = page.locator(f"#{elem_id} .easyphoto-progress").first
    if not bar.count():
        return {}
    values = {key: bar.get_attribute(f"data-{key}") or "" for key in
              ("state", "stage", "job", "percent")}
    values["text"] = bar.inner_text()
    return values


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class ProgressWatch:
    """Samples a progress bar while waiting, so a test can say what it showed along the way."""

    def __init__(self, page: Any, elem_id: str) -> None:
        self.page, self.elem_id = page, elem_id
        self.seen: list[dict[str, str]] = []

    def sample(self) -> dict[str, str]:
        value = progress(self.page, self.elem_id)
        if value and (not self.seen or self.seen[-1] != value):
            self.seen.append(value)
        return value

    def until_state(self, states: tuple[str, ...], timeout: float, job: str | None = None
                    ) -> dict[str, str]:
        def ended() -> dict[str, str] | None:
            value = self.sample()
            matches = value.get("state") in states and (job is None or value.get("job") == job)
            return value if matches else None

        return wait_until(ended, timeout, lambda: f"{self.elem_id} to show {states}; it "
                          f"showed:\n{self.texts()[-3000:]}", interval=0.2)

    def texts(self) -> str:
        return "\n".join(v["text"] for v in self.seen)
