"""The catalogue covers every user-visible string of ours, in 简体中文 too, and the API, the CLI
and the host's localization file read it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from easyphoto_core import i18n

ROOT = Path(__file__).resolve().parents[2]

# Exceptions whose message reaches a user (UI status, API `detail`, CLI `error:` line).
USER_ERRORS = {
    "UserIdError", "ImageDecodeError", "QueueFull", "JobNotFound", "JobStateError",
    "StudioNotReady", "MissingModelError", "UnknownUserError", "TemplateFaceError",
    "BaseModelMismatchError", "WeightsError", "HTTPException", "FaceModelError", "JobCancelled",
    "ParamsError", "CompatError",
}
# Modules where a plain ValueError is a user's mistake (elsewhere it is a programming error).
VALUE_ERROR_MODULES = {"studio.py", "api.py", "templates.py", "portrait.py", "cli.py",
                       "compat_routes.py", "infotext.py"}
SCANNED = ["easyphoto_core", "easyphoto_app"]


def _template(node: ast.AST) -> str | None:
    """An f-string as the catalogue spells it: each expression becomes a named placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value).replace("{", "{{").replace("}", "}}"))
            else:
                source = ast.unparse(value.value)  # type: ignore[attr-defined]
                name = "".join(c if c.isalnum() else "_" for c in source).strip("_")[:20]
                parts.append("{" + (name or "value") + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        return None if left is None or right is None else left + right
    return None


def raised_messages() -> dict[str, str]:
    """Every message template raised to a user in our sources -> where it is raised."""
    found: dict[str, str] = {}
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                kind = ast.unparse(node.exc.func).rsplit(".", 1)[-1]
                if kind not in USER_ERRORS and not (
                        kind == "ValueError" and path.name in VALUE_ERROR_MODULES):
                    continue
                args = list(node.exc.args[:2]) + [k.value for k in node.exc.keywords
                                                  if k.arg == "detail"]
                for arg in args:
                    text = _template(arg)
                    if text and " " in text.strip() and any(c.isalpha() for c in
                                                              i18n._PLACEHOLDER.sub("", text)):
                        found[text] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def ui_strings() -> list[str]:
    from easyphoto_app import labels
    from easyphoto_core.params import GenerateParams, TrainParams, params_schema

    strings = [*labels.TEXT.values(), *labels.STATES.values(), *labels.STAGES.values(),
               *labels.REASONS.values(), *labels.FIELD_LABELS.values()]
    for model in (TrainParams, GenerateParams):
        for prop in params_schema(model)["properties"].values():
            strings += [prop[key] for key in ("title", "description") if prop.get(key)]
    return strings


def test_every_ui_string_has_a_chinese_entry():
    missing = sorted({s for s in ui_strings() if not i18n.has_entry(s)})
    assert not missing, "no zh entry in easyphoto_core/i18n_zh.json for: " + repr(missing)


def test_every_raised_user_message_has_a_chinese_entry():
    missing = {text: where for text, where in raised_messages().items()
               if not i18n.has_entry(text)}
    assert not missing, "no zh entry for these messages: " + json.dumps(missing, indent=1,
                                                                       ensure_ascii=False)


def test_entries_are_chinese_and_keep_their_placeholders():
    for english, chinese in i18n.catalogue().items():
        assert any("\u4e00" <= c <= "\u9fff" for c in chinese) or chinese == english, english
        assert sorted(i18n._PLACEHOLDER.findall(english)) == sorted(
            i18n._PLACEHOLDER.findall(chinese)), english


def test_gettext_and_nested_message_translation():
    assert i18n.gettext("Start training", "zh") == "开始训练"
    assert i18n.gettext("Start training", "en") == "Start training"
    assert i18n.gettext("{kept} of {total} photos kept.", "zh", kept=3, total=5) == \
        "共 5 张照片，保留 3 张。"
    message = ("Cannot generate: No job 'abc' in this studio.")
    assert i18n.translate_message(message, "zh") == "无法生成：此工作室中没有任务 'abc'。"
    assert i18n.translate_message("something we never wrote", "zh") == "something we never wrote"


def test_real_error_is_translated():
    from easyphoto_core.workspace import UserIdError, validate_user_id

    with pytest.raises(UserIdError) as error:
        validate_user_id("bad/id")
    chinese = i18n.translate_message(str(error.value), "zh")
    assert chinese != str(error.value) and "'bad/id'" in chinese and "用户" in chinese


@pytest.mark.parametrize("header, expected", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9,zh;q=0.8", "en"),
    ("fr-FR, zh;q=0.5", "zh"), ("fr", None), (None, None), ("en;q=0.1, zh-TW;q=0.2", "zh")])
def test_accept_language(header, expected):
    assert i18n.language_from_header(header) == expected


def test_language_scopes():
    i18n.set_default_language("zh")
    try:
        assert i18n.gettext("Generate") == "生成"
        with i18n.use_language("en"):
            assert i18n.gettext("Generate") == "Generate"
    finally:
        i18n.set_default_language("en")
    assert i18n.gettext("Generate") == "Generate"


def test_host_localization_file_is_current():
    """localizations/zh_CN.json is the host's format (flat English -> 中文) and matches the
    catalogue: regenerate it with `python -m easyphoto_core.i18n`."""
    shipped = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    assert shipped == i18n.host_localization()
    assert shipped["Start training"] == "开始训练"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in shipped.items())


def test_cli_lang_prints_errors_in_chinese(capsys, tmp_path):
    from easyphoto_core.cli import main

    assert main(["--lang", "zh", "download", "no_such_weight", "--weights-dir",
                 str(tmp_path)]) == 1
    chinese = capsys.readouterr().err
    assert chinese.startswith("错误：注册表中没有名为 'no_such_weight' 的权重"), chinese
    assert main(["download", "no_such_weight", "--weights-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error: no weight called 'no_such_weight'")
