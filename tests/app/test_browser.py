"""The EasyPhoto tab in a real browser: headless Chromium against `python app.py` on the tiny
random-weight models, as a new user would try it.

Train: real photos of one person plus one of someone else and a file that is not an image; each
verdict is shown in words, the progress bar moves through training, validation and the final
choice, the log and validation images arrive, the LoRA name and face-id image are shown. A job
is cancelled, the page reloaded and a second tab opened while another runs (both reattach), and
it is started again. Generate: a one-face and a two-face template, one dropdown per face, the
results with each face's crop and identity score.

Runs under the gradio of the venv it is started from (3.41 in the A1111 test venv, the newest
in the dev venv). Screenshots go to tests/artifacts/screenshots (or $EASYPHOTO_SCREENSHOTS).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

from tests.app.browser_helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    ProgressWatch,
    choose,
    dropdown_value,
    gallery_images,
    inner_text,
    open_accordion,
    open_page,
    open_tab,
    screenshot,
    set_checkbox,
    set_number,
    studio_server,
    text_input,
    upload,
    wait_until,
)

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

# Two steps on the tiny models, one validation (the costly part on a CPU) at the end.
TRAIN_NUMBERS = {"resolution": 256, "rank": 4, "network_alpha": 4, "max_train_steps": 2,
                 "val_and_checkpointing_steps": 2, "num_validation_templates": 1}
LONG_RUN_STEPS = 400  # long enough to be cancelled while it trains
GENERATE_NUMBERS = {"first_diffusion_resolution": 256, "first_diffusion_steps": 2,
                    "second_diffusion_steps": 2, "seed": 5}
JOB_TIMEOUT = 600  # a bound for a busy machine; on an idle one a job takes well under a minute
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, faces_dir) -> list[Path]:
    """Three photos of person A, one of person C, and a text file named like a photo."""
    folder = tmp_path_factory.mktemp("photos")
    names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "kit1.jpg"]
    for name in names:
        shutil.copy(faces_dir / name, folder / name)
    (folder / "holiday.jpg").write_text("this is not a photo")
    return [folder / name for name in [*names, "holiday.jpg"]]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, shared_models_dir) -> str:
    from easyphoto_core.sd.tiny import write_tiny_models

    root = tmp_path_factory.mktemp("studio")
    models = write_tiny_models(root / "models", seed=0)
    with studio_server(models=models, workspace=root / "workspace", weights_dir=shared_models_dir,
                       log=root / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    open_page(page, studio)
    yield page
    context.close()


def fill_train_form(page, user_id: str, photos: list[Path], **numbers: float) -> None:
    open_tab(page, "Train")
    text_input(page, "easyphoto_user_id").fill(user_id)
    upload(page, "easyphoto_photos", photos)
    wait_until(lambda: gallery_images(page, "easyphoto_photo_gallery") == len(photos), 120,
               "a thumbnail per uploaded photo")
    open_accordion(page, "easyphoto_train_advanced")
    for name, value in {**TRAIN_NUMBERS, **numbers}.items():
        set_number(page, f"easyphoto_train_{name}", value)
    set_checkbox(page, "easyphoto_train_skin_retouching", False)
    choose(page, "easyphoto_train_lora_selection", "best")


def test_training_shows_each_verdict_the_moving_progress_and_the_result(page, photos):
    fill_train_form(page, "obama", photos)
    watch = ProgressWatch(page, "easyphoto_train_progress")
    page.locator("#easyphoto_train_button").click()
    wait_until(lambda: page.locator("#easyphoto_train_button").is_disabled(), 15,
               "Start to be disabled while its job runs")
    assert page.locator("#easyphoto_train_cancel").is_enabled()

    # every photo's verdict, in words
    verdicts = wait_until(lambda: "holiday.jpg: " in inner_text(page, "easyphoto_photo_gallery")
                          and inner_text(page, "easyphoto_photo_gallery"), 120,
                          "the photo verdicts")
    assert "obama2.jpg: kept" in verdicts
    assert "kit1.jpg: dropped: someone else" in verdicts and "same person from" in verdicts
    assert "holiday.jpg: dropped: not an image" in verdicts
    assert "Error" not in verdicts and "identity_outlier" not in verdicts
    assert "3 of 5 photos kept" in inner_text(page, "easyphoto_photos_summary")

    final = watch.until_state(("done", "failed", "cancelled"), JOB_TIMEOUT)
    assert final["state"] == "done", watch.texts() + "\n" + inner_text(page, "easyphoto_train_log")
    shown = watch.texts()
    assert "training · step" in shown and "loss" in shown and "ETA" in shown
    assert "validating a checkpoint" in shown  # the validation is a stage, not a stall
    assert "in this stage" in shown  # the clock that moves while a stage has no steps
    percents = [float(v["percent"]) for v in watch.seen if v.get("percent")]
    assert percents == sorted(percents) and len(set(percents)) >= 3, percents

    log = page.locator("#easyphoto_train_log textarea").input_value()
    for line in ("kit1.jpg: dropped", "loading the model", "training 2 steps",
                 "checkpoint saved at step 2", "validation at step 2", "LoRA saved"):
        assert line in log, log
    result = inner_text(page, "easyphoto_train_result")
    assert "easyphoto_obama" in result and "<lora:easyphoto_obama:0.9>" in result
    assert "Chosen checkpoint(s): 2" in result, result
    assert "step 2: identity" in inner_text(page, "easyphoto_validation_gallery")
    assert page.locator("#easyphoto_face_id img").count() == 1
    assert page.locator("#easyphoto_train_button").is_enabled()
    assert "obama" in inner_text(page, "easyphoto_jobs") and "done" in inner_text(
        page, "easyphoto_jobs")
    _keep(screenshot(page, "train"), "train")  # the README's Train screenshot


def test_cancel_reload_second_tab_and_restart(page, browser, studio, photos):
    text_input(page, "easyphoto_user_id").fill("")
    text_input(page, "easyphoto_user_id").fill("obama")
    text_input(page, "easyphoto_user_id").press("Tab")
    wait_until(lambda: "already trained" in inner_text(page, "easyphoto_overwrite_warning"), 60,
               "the warning before overwriting a trained user id")
    set_number(page, "easyphoto_train_max_train_steps", LONG_RUN_STEPS)
    set_checkbox(page, "easyphoto_train_validation", False)
    page.locator("#easyphoto_train_button").click()
    watch = ProgressWatch(page, "easyphoto_train_progress")
    running = wait_until(lambda: (v := watch.sample()).get("stage") == "train"
                         and "step" in v.get("text", "") and v, JOB_TIMEOUT,
                         "the long run to train")
    job = running["job"]

    # a reload and a second tab both find the running job and follow it
    page.reload()
    page.wait_for_selector("#easyphoto_train_button")
    watch = ProgressWatch(page, "easyphoto_train_progress")
    wait_until(lambda: watch.sample().get("job") == job and watch.seen[-1]["state"] == "running",
               60, "the reloaded page to reattach")
    second = browser.new_context().new_page()
    second.goto(studio)
    other = ProgressWatch(second, "easyphoto_train_progress")
    wait_until(lambda: other.sample().get("job") == job, 60, "a second tab to reattach")
    steps = {v["text"] for v in other.seen}
    wait_until(lambda: other.sample()["text"] not in steps, 30, "the second tab's bar to move")
    assert job in inner_text(second, "easyphoto_jobs") and "running" in inner_text(
        second, "easyphoto_jobs")
    assert second.locator("#easyphoto_train_button").is_disabled()
    second.context.close()

    # Cancel from the reloaded page; Start comes back and trains again to the end
    page.locator("#easyphoto_train_cancel").click()
    cancelled = watch.until_state(("cancelled", "done", "failed"), 60, job=job)
    assert cancelled["state"] == "cancelled", cancelled
    assert "current LoRA is unchanged" in inner_text(page, "easyphoto_train_result")
    wait_until(lambda: page.locator("#easyphoto_train_button").is_enabled(), 15, "Start back")
    fill_train_form(page, "obama", photos)
    set_checkbox(page, "easyphoto_train_validation", False)
    page.locator("#easyphoto_train_button").click()
    wait_until(lambda: (v := watch.sample()).get("job") not in ("", job) and v, 120,
               "the restarted job")
    restarted = watch.until_state(("done", "failed", "cancelled"), JOB_TIMEOUT)
    assert restarted["state"] == "done", watch.texts()


def paint(page, template_note: str) -> list[str]:
    """Click Generate and follow the new job (not the previous one the bar still shows)."""
    watch = ProgressWatch(page, "easyphoto_generate_progress")
    before = watch.sample().get("job", "")
    page.locator("#easyphoto_generate_button").click()
    job = wait_until(lambda: (v := watch.sample()).get("job") not in ("", before)
                     and v["job"], 60, "the new generate job on the bar")
    final = watch.until_state(("done", "failed", "cancelled"), JOB_TIMEOUT, job=job)
    assert final["state"] == "done", (template_note, watch.texts(),
                                      inner_text(page, "easyphoto_generate_message"))
    wait_until(lambda: "portrait" in inner_text(page, "easyphoto_results_gallery"), 30, "the results")
    return [watch.texts(), inner_text(page, "easyphoto_results_gallery")]


def test_generate_on_one_and_two_face_templates(page, faces_dir, tmp_path):
    # the two-person photo at half size: the seam pass's attention grows with the square of its
    # pixels (at full size it was 40 of this test's 70 s on a CPU)
    two_people = tmp_path / "two_people.jpg"
    with Image.open(faces_dir / "two_people.jpg") as full:
        full.resize((full.width // 2, full.height // 2), Image.LANCZOS).save(two_people)
    open_tab(page, "Generate")
    open_accordion(page, "easyphoto_generate_advanced")
    for name, value in GENERATE_NUMBERS.items():
        set_number(page, f"easyphoto_generate_{name}", value)
    # the trained user id is offered without pressing Refresh
    wait_until(lambda: dropdown_value(page, "easyphoto_face_user_id_1") == "obama", 30,
               "the user id filled in after training")

    page.locator("#easyphoto_template_gallery .thumbnail-item").first.click()
    wait_until(lambda: "1 face(s) found" in inner_text(page, "easyphoto_faces_found"), 60,
               "the astronaut's face to be found")
    assert not page.locator("#easyphoto_face_user_id_2").is_visible()
    progress_text, results = paint(page, "astronaut")
    assert "face 1: first diffusion" in progress_text and "second diffusion" in progress_text
    assert "portrait 1" in results and "face 1: obama, identity" in results
    assert gallery_images(page, "easyphoto_results_gallery") == 2

    upload(page, "easyphoto_template", [two_people])
    wait_until(lambda: "2 face(s) found" in inner_text(page, "easyphoto_faces_found"), 60,
               "the two faces to be found")
    assert page.locator("#easyphoto_face_user_id_2").is_visible()
    choose(page, "easyphoto_face_user_id_2", "obama")
    wait_until(lambda: dropdown_value(page, "easyphoto_face_user_id_2") == "obama", 15,
               "face 2's user id to be chosen")
    page.locator("#easyphoto_add_template").click()
    wait_until(lambda: gallery_images(page, "easyphoto_template_gallery") == 2, 30,
               "the upload added to the templates")
    assert dropdown_value(page, "easyphoto_face_user_id_2") == "obama"
    progress_text, results = paint(page, "two people")
    _keep(screenshot(page, "generate"), "generate")  # an artifact whether or not what follows holds
    assert "seam pass" in progress_text, progress_text
    assert "face 1: obama, identity" in results and "face 2: obama, identity" in results
    assert gallery_images(page, "easyphoto_results_gallery") == 3


def _keep(path: Path, name: str) -> None:
    """With EASYPHOTO_DOCS_SCREENSHOTS=1, also refresh the README's copy under docs/."""
    if os.environ.get("EASYPHOTO_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / f"screenshot-{name}.png")
