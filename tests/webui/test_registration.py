"""scripts/easyphoto.py loaded the way the hosts load it, against both stand-in hosts (A1111
with sd-webui-controlnet, Forge with its built-in ControlNet): registration, start-up that loads
no model, auth on our routes, and training inside the host."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.api_helpers import files_of, wait_for
from tests.webui.stand_ins import HOSTS, forget_host_modules, use_host

REPO = Path(__file__).resolve().parents[2]


def _load_script() -> None:
    """Load scripts/easyphoto.py like modules/scripts.py does."""
    spec = importlib.util.spec_from_file_location("easyphoto.py", REPO / "scripts" / "easyphoto.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _basic(credentials: str) -> dict[str, str]:
    return {"Authorization": f"Basic {base64.b64encode(credentials.encode()).decode()}"}


@pytest.fixture(params=HOSTS)
def host(request, monkeypatch, tmp_path):
    """The stand-in host `request.param` with our script loaded; nothing loaded yet."""
    monkeypatch.setenv("STAND_IN_LORA_DIR", str(tmp_path / "my_loras"))
    monkeypatch.setenv("STAND_IN_API_AUTH", "alice:s3cr:et")
    monkeypatch.setenv("STAND_IN_CHECKPOINT", str(tmp_path / "sd15.safetensors"))
    monkeypatch.setenv("EASYPHOTO_WORKSPACE", str(tmp_path / "ws"))
    for name in ("STAND_IN_GRADIO_AUTH", "STAND_IN_GRADIO_AUTH_PATH"):
        monkeypatch.delenv(name, raising=False)
    use_host(monkeypatch, request.param)
    _load_script()
    from modules import script_callbacks, shared

    yield request.param, script_callbacks.registered, shared
    forget_host_modules(monkeypatch)


def _routes(registered):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    registered["app_started"][0](None, app)
    return TestClient(app)


def test_script_registers_tab_settings_and_routes(host):
    _, registered, _ = host
    assert [len(registered[k]) for k in ("ui_tabs", "ui_settings", "app_started")] == [1, 1, 1]


def test_a_ui_reload_ends_our_streams_and_retires_the_old_job_queue(host, monkeypatch):
    """"Reload UI": the host closes the page first (gradio stops its queue, then waits for open
    streams: ours end), then calls script_unloaded (our queue starts no more jobs) and runs
    our script again, which makes a new integration."""
    _, registered, shared = host
    integration = registered["ui_tabs"][0].__self__
    registered["ui_tabs"][0]()
    _routes(registered)  # the host started: the job queue's worker runs
    context = integration.context()
    assert not context.ui_closing()
    monkeypatch.setattr(shared, "demo", SimpleNamespace(_queue=SimpleNamespace(stopped=True)),
                        raising=False)
    assert context.ui_closing()

    assert len(registered["script_unloaded"]) == 1
    worker = context.jobs._worker
    assert worker is not None and worker.is_alive()
    registered["script_unloaded"][0]()
    worker.join(timeout=5)
    assert not worker.is_alive()


def test_tab_is_named_easyphoto(host):
    _, registered, _ = host
    (blocks, title, elem_id), = registered["ui_tabs"][0]()
    assert (title, elem_id) == ("EasyPhoto", "easyphoto")
    assert type(blocks).__name__ == "Blocks"


def test_the_tab_is_built_in_the_hosts_language(host):
    """With the host's localization set to a Chinese one, the tab's own words come in Chinese
    (the host's file leaves out words it shows itself, like Train and Generate); a "(leave this
    face)" built in one language is still no user id after the setting changes."""
    from easyphoto_app import labels
    from easyphoto_app.ui_generate import chosen_user_ids
    from easyphoto_core.i18n import set_default_language

    _, registered, shared = host
    shared.opts.data["localization"] = "zh-Hans (Stable)"  # a language pack's, not ours
    try:
        (blocks, _, _), = registered["ui_tabs"][0]()
        shown = {str(getattr(block, key, None)) for block in blocks.blocks.values()
                 for key in ("value", "label")}
        assert {"开始训练", "生成", "种子"} <= shown
        chinese_leave = labels.text("leave_face")
    finally:
        set_default_language("en")
    assert chosen_user_ids([chinese_leave, "ann"]) == [None, "ann"]


def test_start_up_loads_no_checkpoint_yet_names_the_selected_one(host, tmp_path, monkeypatch):
    """Building the tab and the routes must not load the host's model (A1111's shared.sd_model
    loads it when read); /version still names the checkpoint the host will use. Forge builds
    the extensions' tabs before main_entry fills its loading parameters (seen in a real Forge:
    the tab offered to download the checkpoint it had)."""
    from modules import sd_models

    _, registered, _ = host
    if hasattr(sd_models.model_data, "forge_loading_parameters"):
        monkeypatch.setattr(sd_models.model_data, "forge_loading_parameters", {})
    registered["ui_tabs"][0]()
    client = _routes(registered)
    body = client.get("/easyphoto/v1/version", headers=_basic("alice:s3cr:et")).json()
    assert body["base_model"] == str(tmp_path / "sd15.safetensors")
    assert sd_models.loads == []


def test_settings_go_to_the_easyphoto_section(host):
    _, registered, shared = host
    registered["ui_settings"][0]()
    info = shared.opts.data_labels["easyphoto_workspace"]
    assert info.section == ("easyphoto", "EasyPhoto")


def test_routes_enforce_the_hosts_api_auth_and_name_the_host(host, tmp_path):
    kind, registered, _ = host
    client = _routes(registered)
    assert client.get("/easyphoto/v1/version").status_code == 401
    assert client.get("/easyphoto/v1/version", headers=_basic("alice:nope")).status_code == 401
    response = client.get("/easyphoto/v1/version", headers=_basic("alice:s3cr:et"))  # ':' ok
    assert response.status_code == 200
    body = response.json()
    assert body["backend"] == body["host"] == kind
    expected = {"a1111": ("v1.10.1", "sd-webui-controlnet"),
                "forge": ("f2.0.1v1.10.1-v1.10.1", "built-in (Forge)")}[kind]
    assert (body["host_version"], body["controlnet"]) == expected
    assert body["lora_dir"] == str(tmp_path / "my_loras")  # --lora-dir honoured
    assert body["workspace"] == str((tmp_path / "ws").resolve())
    paths = client.get("/openapi.json").json()["paths"]
    assert "/easyphoto/v1/user_ids" in paths  # listed in the host's OpenAPI schema


def test_routes_take_the_hosts_gradio_auth_users_too(monkeypatch, tmp_path):
    """With --gradio-auth (or --gradio-auth-path) and no --api-auth the host's UI asks for a
    login, so our routes must not be open either."""
    auth_file = tmp_path / "auth.txt"
    auth_file.write_text("carol:pw 3\n\ndave:pw4,erin:pw5\n", encoding="utf-8")
    monkeypatch.setenv("STAND_IN_API_AUTH", "")
    monkeypatch.setenv("STAND_IN_GRADIO_AUTH", "bob:pw2")
    monkeypatch.setenv("STAND_IN_GRADIO_AUTH_PATH", str(auth_file))
    monkeypatch.setenv("EASYPHOTO_WORKSPACE", str(tmp_path / "ws"))
    use_host(monkeypatch, "a1111")
    _load_script()
    from modules import script_callbacks

    client = _routes(script_callbacks.registered)
    assert client.get("/easyphoto/v1/user_ids").status_code == 401
    assert client.get("/easyphoto/v1/user_ids", headers=_basic("bob:nope")).status_code == 401
    for user in ("bob:pw2", "carol:pw 3", "dave:pw4", "erin:pw5"):
        assert client.get("/easyphoto/v1/user_ids", headers=_basic(user)).status_code == 200
    forget_host_modules(monkeypatch)


def test_the_hosts_gradio_auth_covers_our_tab_and_its_gradio_api(host):
    """The host renders our tab inside its own Blocks and launches that with --gradio-auth:
    with no login, no gradio route of the page answers (config, info, predict, queue, call);
    after a login the same page does."""
    import http.cookiejar
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    import gradio as gr

    _, registered, _ = host
    (tab, title, _), = registered["ui_tabs"][0]()
    with gr.Blocks() as demo, gr.Tab(title):  # as modules/ui.py: create_ui
        tab.render()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.queue()
    demo.launch(auth=[("bob", "pw2")], prevent_thread_lock=True, server_name="127.0.0.1",
                server_port=port, quiet=True)
    base = f"http://127.0.0.1:{port}"

    def status(opener, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            return opener.open(request, timeout=60).status
        except urllib.error.HTTPError as error:
            return error.code

    call = {"fn_index": 0, "data": [], "session_hash": "x"}
    paths = {"/config": None, "/info": None, "/gradio_api/info": None, "/run/predict": call,
             "/api/predict": call, "/gradio_api/run/predict": call, "/queue/join": call,
             "/gradio_api/queue/join": call, "/gradio_api/call/predict": call}
    try:
        anonymous = urllib.request.build_opener()
        seen = {path: status(anonymous, path, body) for path, body in paths.items()}
        assert all(code in (401, 403, 404, 405) for code in seen.values()), seen
        assert seen["/config"] == 401
        jar = http.cookiejar.CookieJar()
        user = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = urllib.parse.urlencode({"username": "bob", "password": "pw2"}).encode()
        assert user.open(urllib.request.Request(base + "/login", data=login), timeout=60
                         ).status == 200
        assert status(user, "/config") == 200
    finally:
        demo.close()


class _Handle:
    """What a training job's session sees of its JobHandle."""

    def __init__(self) -> None:
        self.record = SimpleNamespace(user_ids=["alice"], progress={})
        self.stopped = threading.Event()
        self.by = None

    @property
    def cancelled(self) -> bool:
        return self.stopped.is_set()

    def request_cancel(self, by: str) -> None:
        self.by = by
        self.stopped.set()


def _session(kind, monkeypatch, tmp_path, *, loaded: bool):
    monkeypatch.setenv("STAND_IN_CHECKPOINT", str(tmp_path / "sd15.safetensors"))
    use_host(monkeypatch, kind)
    from modules import sd_models

    from easyphoto_webui import host, hosts

    webui = hosts.detect()
    if loaded:  # the host has generated once
        if kind == "forge":
            sd_models.forge_model_reload()
        else:
            sd_models.load_model()
    handle = _Handle()
    return host.training_session(handle, webui.hand_over_gpu), handle, sd_models


@pytest.mark.parametrize("kind", HOSTS)
@pytest.mark.parametrize("loaded", [False, True], ids=["right-after-start-up", "loaded"])
def test_training_hands_the_gpu_over_the_hosts_way(kind, loaded, monkeypatch, tmp_path):
    session, _, sd_models = _session(kind, monkeypatch, tmp_path, loaded=loaded)
    loads = list(sd_models.loads)
    with session:
        during = list(sd_models.calls)
    after = sd_models.calls[len(during):]
    assert sd_models.loads == loads  # a hand-over never loads the checkpoint
    if kind == "forge":  # Forge unloads everything and reloads by itself when it needs to
        assert (during, after) == (["unload_all_models"], [])
    elif loaded:  # A1111 moves its model to the CPU and back
        assert (during, after) == (["unload_model_weights"], ["send_model_to_device"])
        assert sd_models.model_data.sd_model.device == "gpu"
    else:  # nothing on the GPU: nothing to move
        assert (during, after) == ([], [])
    forget_host_modules(monkeypatch)


@pytest.mark.parametrize("kind", HOSTS)
def test_training_shows_in_the_hosts_progress_and_its_interrupt_cancels_it(
        kind, monkeypatch, tmp_path):
    session, handle, _ = _session(kind, monkeypatch, tmp_path, loaded=False)
    from modules import call_queue, shared

    with session:
        assert call_queue.queue_lock.locked()  # the host's own generations wait
        assert shared.state.job == "EasyPhoto training alice"
        handle.record.progress.update(stage="train", step=120, total=800)
        shared.state.interrupt()  # the user presses the WebUI's Interrupt button
        assert handle.stopped.wait(30)
        assert shared.state.textinfos[-1] == "EasyPhoto alice: train 120/800"
        assert (shared.state.sampling_step, shared.state.sampling_steps) == (120, 800)
    assert handle.by == "the WebUI's Interrupt button"  # the job's message names who stopped it
    assert not call_queue.queue_lock.locked() and shared.state.job == ""
    forget_host_modules(monkeypatch)


@pytest.mark.parametrize("kind", HOSTS)
def test_training_and_generating_from_the_host(kind, monkeypatch, tmp_path, faces_dir,
                                               shared_models_dir):
    """The real trainer, driven through the routes right after the host started (nothing
    loaded yet): it trains on the selected checkpoint and the LoRA lands in --lora-dir; then a
    portrait is painted by the host's img2img with its ControlNet's units and the LoRA tag."""
    from easyphoto_core.sd.tiny import write_tiny_models

    models = write_tiny_models(tmp_path / "models", seed=0)
    monkeypatch.setenv("STAND_IN_CHECKPOINT", str(models.checkpoint))
    monkeypatch.setenv("STAND_IN_LORA_DIR", str(tmp_path / "my_loras"))
    monkeypatch.setenv("STAND_IN_API_AUTH", "")
    monkeypatch.setenv("EASYPHOTO_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("EASYPHOTO_MODELS_DIR", str(shared_models_dir))  # YuNet, offline
    use_host(monkeypatch, kind)
    _load_script()
    from modules import processing, script_callbacks, sd_models

    client = _routes(script_callbacks.registered)
    assert client.get("/easyphoto/v1/version").json()["base_model"] == str(models.checkpoint)
    params = {"resolution": 256, "rank": 4, "network_alpha": 4, "max_train_steps": 1,
              "validation": False}
    photos = files_of(faces_dir, ["obama.jpg", "obama2.jpg", "obama3.jpg"])
    job = client.post("/easyphoto/v1/train", data={"user_id": "obama",
                                                   "params": json.dumps(params)}, files=photos)
    assert job.status_code == 200, job.text
    record = wait_for(client, job.json()["id"], timeout=300)
    assert record["state"] == "done", record["message"]
    assert (tmp_path / "my_loras" / "easyphoto_obama.safetensors").is_file()
    assert sd_models.loads == []  # trained without loading the host's model first

    generate = {"first_diffusion_resolution": 256, "first_diffusion_steps": 4,
                "second_diffusion_steps": 4, "seed": 5}
    template = (faces_dir / "biden.jpg").read_bytes()
    job = client.post("/easyphoto/v1/generate",
                      data={"user_ids": "obama", "params": json.dumps(generate)},
                      files={"template": ("biden.jpg", template, "image/jpeg")})
    assert job.status_code == 200, job.text
    record = wait_for(client, job.json()["id"], timeout=300)
    assert record["state"] == "done", record["message"]
    assert sd_models.loads == [str(models.checkpoint)]  # loaded once, by the first pass
    assert len(processing.runs) >= 2  # the first and second diffusion
    assert all("<lora:easyphoto_obama:" in run["p"].settings["prompt"] for run in processing.runs)
    assert all(run["lock_held"] and run["applied"] == [u.model for u in run["units"]]
               and run["units"] for run in processing.runs)
    assert client.get(f"/easyphoto/v1/jobs/{record['id']}/image").status_code == 200
    forget_host_modules(monkeypatch)
