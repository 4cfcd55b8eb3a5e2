"""`app.py --lang zh`: the tab is built in 简体中文 from the one catalogue (labels, buttons,
tabs, params' labels and help, status lines)."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from easyphoto_app.server import parse_args  # noqa: E402
from easyphoto_app.ui import build_ui  # noqa: E402
from easyphoto_core import i18n  # noqa: E402
from easyphoto_core.context import StudioContext  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402


def _texts(blocks) -> set[str]:
    texts = set()
    for block in blocks.blocks.values():
        for attribute in ("label", "value", "info", "placeholder"):
            value = getattr(block, attribute, None)
            if isinstance(value, str):
                texts.add(value)
    return texts


@pytest.fixture()
def chinese():
    i18n.set_default_language(parse_args(["--lang", "zh"]).lang)
    yield
    i18n.set_default_language("en")


def test_the_tab_in_chinese(tmp_path, chinese):
    texts = _texts(build_ui(StudioContext(Workspace(tmp_path), "diffusers")))
    for expected in ("训练", "生成", "开始训练", "用户 ID", "LoRA 权重", "第一次扩散步数",
                     "高级生成选项", "训练种子"):
        assert expected in texts, expected
    assert "Start training" not in texts and "LoRA weight" not in texts


def test_the_tab_in_english_by_default(tmp_path):
    texts = _texts(build_ui(StudioContext(Workspace(tmp_path), "diffusers")))
    assert {"Train", "Start training", "LoRA weight"} <= texts and "开始训练" not in texts


def test_status_lines_in_chinese(chinese):
    from types import SimpleNamespace

    from easyphoto_app.labels import state_name
    from easyphoto_app.views import plain_message

    assert state_name("failed") == "失败"
    record = SimpleNamespace(message="JobStateError: No job 'x' in this studio.")
    assert plain_message(record.message) == "此工作室中没有任务 'x'。"
