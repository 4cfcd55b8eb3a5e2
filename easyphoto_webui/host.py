"""What EasyPhoto uses of its host, AUTOMATIC1111 or Forge: folders, credentials, options,
img2img runs and the host's progress; what differs between the two lives in hosts.py.

Only this package imports `modules.*`; every access is a small function so the stand-in hosts
in tests/webui cover exactly what we use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules import paths, shared

from easyphoto_core.callbacks import StepCallback
from easyphoto_webui import hosts

SETTINGS_SECTION = ("easyphoto", "EasyPhoto")
# The settings page's heading our section sits under (A1111 1.6+ and Forge group sections into
# categories; a section without one lands under "Uncategorized"). Neither registers a category
# for extensions (modules/shared_options.py at 82a973c0: saving, sd, ui, system, postprocessing,
# training), so we join the host's own "Training": EasyPhoto trains LoRAs, beside its Training.
SETTINGS_CATEGORY = "training"


@dataclass(frozen=True)
class HostFolders:
    models: Path
    lora: Path
    controlnet: tuple[Path, ...]
    outputs: Path


def host_folders() -> HostFolders:
    """The host's folders, honouring --lora-dir and --controlnet-dir."""
    models = Path(paths.models_path)
    lora = Path(getattr(shared.cmd_opts, "lora_dir", None) or models / "Lora")
    controlnet = [models / "ControlNet"]
    extra = getattr(shared.cmd_opts, "controlnet_dir", None)
    if extra:
        controlnet.insert(0, Path(extra))
    outdir = getattr(shared.opts, "outdir_samples", "") or "outputs"
    return HostFolders(models, lora, tuple(controlnet), Path(outdir))


def route_credentials() -> str:
    """Who may call the routes we add: the host's --api-auth and --gradio-auth (and
    --gradio-auth-path) users, as "user:pass,...". The host protects neither kind of route
    added in on_app_started (HOST.md), so we check these ourselves; empty = the host is open."""
    opts = shared.cmd_opts
    items = [getattr(opts, "api_auth", None) or "", getattr(opts, "gradio_auth", None) or ""]
    auth_path = getattr(opts, "gradio_auth_path", None)
    if auth_path:
        # A1111 reads the same file (one or more "user:pass" per line, comma-separated)
        text = Path(auth_path).read_text(encoding="utf-8")
        items += [line.strip() for line in text.splitlines()]
    return ",".join(item for item in items if item)


def workspace_root() -> Path:
    """Setting `easyphoto_workspace`, else $EASYPHOTO_WORKSPACE, else outputs/easyphoto."""
    configured = getattr(shared.opts, "easyphoto_workspace", "") or os.environ.get(
        "EASYPHOTO_WORKSPACE", ""
    )
    return Path(configured) if configured else Path("outputs") / "easyphoto"


def add_settings() -> None:
    """Our options on the host's Settings page (read back through shared.opts.easyphoto_*)."""
    add_option("easyphoto_workspace", shared.OptionInfo(
        "", "EasyPhoto workspace folder (empty = outputs/easyphoto)"))


def add_option(key: str, info: Any) -> None:
    """Register `info` in Settings → EasyPhoto, under the Training heading where the host has
    headings. The section stays the 2-tuple every host takes: older A1111 (before 1.6) has no
    category and would take a 3-tuple section as the section itself, so the category goes on
    the OptionInfo's own `category_id` (what options_section((id, label, category)) sets)."""
    info.section = SETTINGS_SECTION
    if hasattr(info, "category_id"):
        info.category_id = SETTINGS_CATEGORY
    shared.opts.add_option(key, info)


def ui_closing() -> bool:
    """The host is closing its page: "Reload UI" or a stop. A1111 closes the old page before it
    calls any extension (webui.py: demo.close(), then the reload callbacks), and gradio's close
    first stops the page's queue (Blocks.close: queue.close() sets `stopped`), then waits for
    every open connection; a tab still streaming a training's progress kept it waiting until
    the training ended. Our streams end when this turns True."""
    queue = getattr(getattr(shared, "demo", None), "_queue", None)
    return bool(getattr(queue, "stopped", False))


def controlnet_unit_limit() -> int:
    """Settings → ControlNet → "Multi-ControlNet: ControlNet unit number" (default 3)."""
    try:
        return int(shared.opts.data.get("control_net_unit_count", 3))
    except (TypeError, ValueError):
        return 3


def img2img_default_script_args() -> list[Any]:
    """Every img2img script's UI defaults, laid out as `p.script_args` (the way the host's own
    API fills them: modules/api/api.py, Api.init_default_script_args). Slow: it builds each
    script's UI; callers keep the result."""
    import gradio as gr
    from modules import scripts

    runner = scripts.scripts_img2img
    script_args: list[Any] = [None] * max([1, *(s.args_to for s in runner.scripts)])
    script_args[0] = 0
    with gr.Blocks():  # scripts' ui() creates components, which need an open Blocks
        for script in runner.scripts:
            components = script.ui(script.is_img2img)
            if components:
                script_args[script.args_from:script.args_to] = [c.value for c in components]
    return script_args




class ControlNetNotApplied(RuntimeError):
    """The host's ControlNet did not apply a unit we gave it; the message says why."""


@dataclass
class Img2ImgResult:
    image: Any | None  # the first image; None when the run was stopped
    stopped_by: str | None = None  # "easyphoto" (our cancel) or "host" (its Interrupt)


class _ControlNetGuard:
    """Both hosts log and swallow an exception raised in a script and paint on without it, so
    a portrait would come out "done" but without ControlNet. For one run, this wraps the
    phases of ControlNet's script, keeps the first error, and presses the host's Interrupt so
    that it does not paint a useless image."""

    def __init__(self, script: Any, phases: tuple[str, ...]) -> None:
        self.script, self.phases = script, phases
        self.ran: set[str] = set()
        self.error: BaseException | None = None
        self._own: dict[str, Any] = {}  # what the instance itself had under those names

    def __enter__(self) -> _ControlNetGuard:
        for name in self.phases:
            if name in vars(self.script):
                self._own[name] = vars(self.script)[name]
            setattr(self.script, name, self._guarded(name, getattr(self.script, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.phases:
            if name in self._own:
                setattr(self.script, name, self._own[name])
            else:
                delattr(self.script, name)  # the class's own method again

    def _guarded(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
            except Exception as error:
                if self.error is None:
                    self.error = error
                    shared.state.interrupt()
                raise  # the host reports it in its console as usual
            self.ran.add(name)
            return result

        return call

    def check(self, p: Any, count: int) -> None:
        """Raise unless every phase ran cleanly and ControlNet recorded all `count` units."""
        if self.error is not None:
            raise ControlNetNotApplied(
                f"The WebUI's ControlNet failed on this pass ({type(self.error).__name__}: "
                f"{self.error}), so no portrait was painted without it. Its full message is "
                "in the WebUI's console.")
        missing = [name for name in self.phases if name not in self.ran]
        if missing:
            raise ControlNetNotApplied(
                f"The WebUI's ControlNet did not run on this pass ({', '.join(missing)} never "
                "ran), so no portrait was painted without it: check that ControlNet is enabled "
                "for img2img.")
        # both ControlNets record each unit they take as "ControlNet <i>" in the infotext
        params = getattr(p, "extra_generation_params", {}) or {}
        applied = sum(f"ControlNet {i}" in params for i in range(count))
        if applied < count:
            raise ControlNetNotApplied(
                f"The WebUI's ControlNet applied {applied} of the {count} control units of "
                "this pass, so no portrait was painted without them: see the WebUI's console.")


def run_img2img(settings: dict[str, Any], *, script_args: list[Any], host: Any,
                controlnet: Any, units: list[Any], interrupt: Callable[[], bool] | None,
                progress: StepCallback | None = None) -> Img2ImgResult:
    """One img2img inpaint on the host's model with ControlNet `units`.

    Holds the host's queue lock (its own generations wait), reports through shared.state,
    passes the host's sampling step to `progress`, turns our interrupt flag into the host's
    Interrupt, and fails when ControlNet did not apply every unit.
    """
    from modules import call_queue, processing, scripts

    p = processing.StableDiffusionProcessingImg2Img(sd_model=shared.sd_model, **settings)
    p.is_api = True  # before the scripts: else Sampler/Seed scripts put UI defaults back
    p.scripts = scripts.scripts_img2img
    p.script_args = list(script_args)
    controlnet.attach(p, units)
    script = hosts.find_script(p.scripts, "ControlNet")
    if script is None:
        raise ControlNetNotApplied("The WebUI's ControlNet script is not active for img2img: "
                                   "enable ControlNet and restart the WebUI.")
    with call_queue.queue_lock, _ControlNetGuard(script, controlnet.phases) as guard:
        shared.state.begin(job="easyphoto")
        finished = threading.Event()
        watcher = threading.Thread(target=_watch, args=(interrupt, progress, finished),
                                   daemon=True)
        watcher.start()
        try:
            processed = host.run(lambda: processing.process_images(p))
        finally:
            finished.set()
            watcher.join()
            shared.state.end()
            p.close()
    if interrupt is not None and interrupt():
        return Img2ImgResult(None, "easyphoto")
    guard.check(p, len(units))
    if shared.state.interrupted:
        return Img2ImgResult(None, "host")
    return Img2ImgResult(processed.images[0])


def _watch(interrupt: Callable[[], bool] | None, progress: StepCallback | None,
           finished: threading.Event) -> None:
    reported = None
    while not finished.wait(0.2):
        if interrupt is not None and interrupt() and not shared.state.interrupted:
            shared.state.interrupt()
        state = shared.state
        step = (getattr(state, "sampling_step", 0), getattr(state, "sampling_steps", 0))
        if progress is not None and step[1] and step != reported:
            progress(*step)
            reported = step


HOST_INTERRUPT = "the WebUI's Interrupt button"  # who stopped a job, in its message


@contextmanager
def training_session(handle: Any, hand_over_gpu: Callable[[], Callable[[], None]]
                     ) -> Iterator[None]:
    """Around a training job: the host's queue lock (the GPU is the trainer's; the host's own
    generations wait), the GPU handed over and back, the job in the host's progress (job name,
    step/total), and the host's Interrupt turned into a cancel of the job that names it."""
    from modules import call_queue

    names = ", ".join(handle.record.user_ids)
    with call_queue.queue_lock:
        shared.state.begin(job=f"EasyPhoto training {names}")
        shared.state.job_count = 1
        give_back = hand_over_gpu()
        finished = threading.Event()
        watcher = threading.Thread(target=_follow_training, args=(handle, names, finished),
                                   daemon=True)
        watcher.start()
        try:
            yield
        finally:
            finished.set()
            watcher.join()
            give_back()
            shared.state.end()


def _follow_training(handle: Any, names: str, finished: threading.Event) -> None:
    state = shared.state
    while not finished.wait(0.25):
        progress = dict(handle.record.progress)
        if progress.get("total"):
            state.sampling_step, state.sampling_steps = progress["step"], progress["total"]
            state.textinfo = (f"EasyPhoto {names}: {progress.get('stage', 'training')} "
                              f"{progress['step']}/{progress['total']}")
        if state.interrupted and not handle.cancelled:
            handle.request_cancel(HOST_INTERRUPT)  # the trainer stops at its next step
