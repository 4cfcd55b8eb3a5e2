"""A first run says what is missing, with the download or (offline) the file and folder."""

from __future__ import annotations

from easyphoto_core import i18n
from easyphoto_core.context import StudioSettings
from easyphoto_core.readiness import console_lines, missing


def test_nothing_configured_names_checkpoint_and_controlnets(tmp_path, monkeypatch):
    monkeypatch.delenv("EASYPHOTO_OFFLINE", raising=False)
    items = missing(StudioSettings(weights_dir=tmp_path / "w"))
    names = [item["name"] for item in items]
    assert names[:4] == ["v1-5-pruned-emaonly", "control_v11p_sd15_canny",
                         "control_v11p_sd15_openpose", "control_v11f1e_sd15_tile"]
    assert "python -m easyphoto_core download control_v11p_sd15_canny" in items[1]["message"]
    assert console_lines(items)[0].startswith(f"EasyPhoto: {len(items)} model(s) missing")


def test_offline_says_which_file_goes_where_and_present_files_count(tmp_path, monkeypatch):
    monkeypatch.setenv("EASYPHOTO_OFFLINE", "1")
    controlnets = tmp_path / "cn"
    controlnets.mkdir()
    (controlnets / "control_v11p_sd15_canny_fp16.safetensors").write_bytes(b"x")
    base = tmp_path / "sd15.safetensors"
    base.write_bytes(b"x")
    items = missing(StudioSettings(base_model=base, controlnet_dirs=[controlnets],
                                   weights_dir=tmp_path / "w"))
    names = [item["name"] for item in items]
    assert "v1-5-pruned-emaonly" not in names and "control_v11p_sd15_canny" not in names
    openpose = items[names.index("control_v11p_sd15_openpose")]
    assert openpose["offline"] and "No network here" in openpose["message"]
    assert f"into {controlnets}" in openpose["message"]
    with i18n.use_language("zh"):
        chinese = missing(StudioSettings(base_model=base, controlnet_dirs=[controlnets],
                                         weights_dir=tmp_path / "w"))
    assert "此处没有网络" in chinese[0]["message"]


def test_host_checkpoint_advice_points_at_the_webui(tmp_path):
    items = missing(StudioSettings(weights_dir=tmp_path), in_host=True)
    assert items[0]["name"] == "v1-5-pruned-emaonly"
    assert "checkpoint menu" in items[0]["message"]
    assert not any(item["name"].startswith("control_") for item in items)
