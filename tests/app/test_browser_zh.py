"""`app.py --lang zh` in a real browser: the tab's labels, buttons and the first-run banner
are Chinese (the tab issue's harness: Playwright + system Chromium)."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

from tests.app.browser_helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    inner_text,
    open_page,
    open_tab,
    studio_server,
)


@pytest.fixture(scope="module")
def studio_zh(tmp_path_factory, shared_models_dir):
    from easyphoto_core.sd.tiny import write_tiny_models

    root = tmp_path_factory.mktemp("studio_zh")
    models = write_tiny_models(root / "models", seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EASYPHOTO_LANG", "zh")  # app.py's --lang default
        with studio_server(models=models, workspace=root / "workspace",
                           weights_dir=root / "no-weights", log=root / "app.log") as url:
            yield url


def test_the_page_shows_chinese_labels(studio_zh):
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            open_page(page, studio_zh)
            body = page.locator("body").inner_text()
            for label in ("训练", "生成", "用户 ID", "开始训练"):
                assert label in body, label
            assert "Start training" not in body
            # gradio's own upload words, whatever the browser's language (here en-US)
            assert page.evaluate("navigator.language").startswith("en")
            photos = inner_text(page, "easyphoto_photos")
            assert "将文件拖放到此处" in photos and "点击上传" in photos and "或" in photos, photos
            for english in ("Drop File Here", "Click to Upload", "- or -"):
                assert english not in page.locator("body").inner_text(), english
            open_tab(page, "生成")  # gradio 3.41's tabs are plain buttons, 4's role=tab
            page.locator("#easyphoto_template").wait_for(state="visible")
            template = inner_text(page, "easyphoto_template")
            assert "将图像拖放到此处" in template and "Drop Image Here" not in template, template
            missing = page.request.get(studio_zh + "easyphoto/v1/version").json()["missing"]
            banner = inner_text(page, "easyphoto-first-run")
            if missing:  # whatever the tiny models lack, the banner says it in Chinese
                assert "生成第一张写真之前" in banner and "缺少" in banner
            else:
                assert not banner.strip()
        finally:
            browser.close()
