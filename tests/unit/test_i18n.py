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
               *labels.REASONS.values(), *labels.FIELD_LABELS.values(), *labels.GRADIO_TEXT]
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


# Calls whose string argument becomes a line the user reads, though it is written in English
# where it is made (the record keeps it so): function name -> which argument. The UI and the API
# translate them on the way out through the catalogue's templates (translate_message).
SHOWN_LATER = {
    "easyphoto_core/preprocess.py": {"_drop": 2, "_notify": 3},  # a photo's verdict, progress
    "easyphoto_core/pipeline/portrait.py": {"inpaint": 0, "light_pass": 2,  # a pass's name
                                            "Interrupted": 0},
    "easyphoto_core/pipeline/sampler.py": {"Interrupted": 0},
    "easyphoto_train/run.py": {"emit": "message"},  # the trainer's notes: the training log
    "easyphoto_train/__main__.py": {"emit": "message"},  # its errors: the log, the message
}


def shown_later_messages() -> dict[str, str]:
    """Every template of SHOWN_LATER in our sources -> where it is."""
    found: dict[str, str] = {}
    for name, wanted in SHOWN_LATER.items():
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func).rsplit(".", 1)[-1]
            where = wanted.get(called)
            if isinstance(where, int) and len(node.args) > where:
                arg = node.args[where]
            elif isinstance(where, str):
                arg = next((k.value for k in node.keywords if k.arg == where), None)
            else:
                continue
            text = _template(arg) if arg is not None else None
            if text and " " in text:
                found[text] = f"{name}:{node.lineno}"
    return found


def _filled(template: str) -> str:
    """The template as a message: each placeholder replaced by a value no entry translates."""
    return i18n._PLACEHOLDER.sub("7", template).replace("{{", "{").replace("}}", "}")


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def test_every_line_written_in_english_for_later_is_translated():
    """Verdict reasons, preprocess steps, generation pass names, the trainer's notes and errors:
    each template found in the code, filled in, comes out in Chinese."""
    found = shown_later_messages()
    assert len(found) >= 15, found  # the scan still finds the calls (names changed?)
    missing = {text: where for text, where in found.items()
               if not _has_chinese(i18n.translate_message(_filled(text), "zh"))}
    assert not missing, "no zh template matches: " + json.dumps(missing, indent=1)


def test_every_training_log_line_is_translated():
    """Every line TrainingProgress writes into the log, for each trainer event and a photo
    report, reads Chinese in the tab (views.log_text) and keeps its time stamp."""
    from types import SimpleNamespace

    from easyphoto_app import views
    from easyphoto_core.trainer_process.progress import TrainingProgress

    sink = SimpleNamespace(fields={})
    sink.report = lambda **fields: sink.fields.update(fields)
    progress = TrainingProgress(sink, validation=True, fusion=True)
    progress.preprocess(0, 2, "checking a.jpg")
    verdicts = [SimpleNamespace(index=0, name="a.jpg", kept=True, reason=None,
                                message="kept, upscaled x2.0", identity_similarity=0.9,
                                image_file="a.png"),
                SimpleNamespace(index=1, name="b.jpg", kept=False, reason="no_face",
                                message="no face found", identity_similarity=None,
                                image_file=None)]
    progress.photos(SimpleNamespace(photos=verdicts))
    progress.loading()
    events = [
        {"event": "start", "total_steps": 200, "photos": 2, "device": "cuda",
         "dtype": "bf16", "startup_seconds": 3.1},
        {"event": "validating", "step": 100},
        {"event": "checkpoint", "step": 100, "path": "x"},
        {"event": "validation", "step": 100, "mean_score": 0.61, "scores": [0.61]},
        {"event": "note", "message": "validation skipped: the dataset has no identity "
                                     "embeddings (re-run preprocess)"},
        {"event": "cancelled", "step": 150},
        {"event": "error", "message": "the trainer stopped on an unexpected error: boom"},
        {"event": "done", "lora_path": "/x/alice.safetensors"},
    ]
    for event in events:
        progress.event(event)
    lines = sink.fields["log"]
    assert len(lines) == 5 + len(events), lines  # 1 step, a summary, 2 photos, loading
    record = SimpleNamespace(progress={"log": lines}, state="running", message="")
    with i18n.use_language("zh"):
        shown = views.log_text(record).splitlines()
    for english, chinese in zip(lines, shown, strict=True):
        assert chinese[:9] == english[:9] and _has_chinese(chinese[9:]), (english, chinese)


def test_the_tab_shows_reasons_passes_and_times_in_chinese():
    from types import SimpleNamespace

    from easyphoto_app import labels, views

    photo = {"name": "b.jpg", "kept": False, "reason": "face_too_small",
             "message": "face too small: 40 px, the minimum is 64 px (use a closer or larger "
                        "photo)"}
    job = SimpleNamespace(id="0123456789ab", kind="generate", user_ids=["ann"],
                          state="running", updated=100.0,
                          progress={"stage": "face 1: second diffusion", "step": 2, "total": 5,
                                    "passes": ["face 1: first diffusion", "seam pass"]})
    with i18n.use_language("zh"):
        assert views.verdict_caption(photo) == (
            "b.jpg: 已剔除：人脸太小 (人脸太小：40 像素，最小为 64 像素（请使用更近或更大的照片）)")
        assert labels.stage_name("face 2: first diffusion") == "人脸 2：第一次扩散"
        table = views.jobs_html([job], now=400.0)
        bar = views.progress_html(job, now=400.0)
    assert "5:00 前" in table and " ago" not in table
    assert "人脸 1：第二次扩散" in bar and "人脸 1：第一次扩散, 接缝修复" in bar


def test_host_localization_file_is_current():
    """localizations/zh_CN.json is the host's format (flat English -> 中文) and matches the
    catalogue: regenerate it with `python -m easyphoto_core.i18n`."""
    shipped = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    assert shipped == i18n.host_localization()
    assert shipped["Start training"] == "开始训练"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in shipped.items())
    # gradio 3.41's upload text nodes in our upload areas
    for word in ("Drop File Here", "Drop Image Here", "Click to Upload", "or"):
        assert _has_chinese(shipped[word]), word


def test_host_localization_leaves_the_hosts_own_words_alone():
    """A1111 translates every text node equal to a key, on the whole page: the host's Train tab,
    txt2img's Generate button, its Seed and Prompt must keep their own (or a language pack's)
    wording. Our tab, built in the user's language, still shows them in Chinese."""
    shipped = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    for word in ("Train", "Generate", "Seed", "Prompt", "Negative prompt", "Interrupt",
                 "CFG scale", "Refresh", "Batch"):
        assert word not in shipped, word
        assert _has_chinese(i18n.gettext(word, "zh")), word  # the tab itself still has it
    assert not i18n.HOST_WORDS & set(shipped)


def test_cli_lang_prints_errors_in_chinese(capsys, tmp_path):
    from easyphoto_core.cli import main

    assert main(["--lang", "zh", "download", "no_such_weight", "--weights-dir",
                 str(tmp_path)]) == 1
    chinese = capsys.readouterr().err
    assert chinese.startswith("错误：注册表中没有名为 'no_such_weight' 的权重"), chinese
    assert main(["download", "no_such_weight", "--weights-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error: no weight called 'no_such_weight'")
