"""Preprocessing real photos into a dataset: outliers, crops, masks, files, failure safety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from easyphoto_core.params import TRIGGER_CAPTION, TrainParams
from easyphoto_core.preprocess import PreprocessError, preprocess_photos
from easyphoto_core.workspace import UserFiles, Workspace
from tests.geometry_helpers import points_in_box

OBAMAS = ["obama.jpg", "obama2.jpg", "obama3.jpg"]


@pytest.fixture(scope="module")
def outlier_run(faces_dir, face_models, tmp_path_factory):
    """obama x3 with biden.jpg slipped in, defaults (resolution 512, skin retouching on)."""
    user = Workspace(tmp_path_factory.mktemp("ws")).user("barack")
    photos = [faces_dir / n for n in ["obama.jpg", "obama2.jpg", "biden.jpg", "obama3.jpg"]]
    events: list[tuple[int, int, str]] = []
    report = preprocess_photos(photos, user, TrainParams(), face_models,
                               progress=lambda *event: events.append(event))
    return user, report, events


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def metadata(user: UserFiles) -> list[dict]:
    lines = (user.dataset_dir / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_other_person_is_dropped_and_the_rest_kept(outlier_run):
    _, report, _ = outlier_run
    verdicts = {v.name: v for v in report.photos}
    assert [v.name for v in report.kept] == OBAMAS
    assert verdicts["biden.jpg"].reason == "identity_outlier"
    assert verdicts["biden.jpg"].identity_similarity < report.identity_threshold
    assert all(verdicts[n].identity_similarity >= report.identity_threshold for n in OBAMAS)
    assert report.reference_name in OBAMAS


def test_report_json_lists_every_input_reference_and_backends(outlier_run):
    user, report, _ = outlier_run
    saved = json.loads(user.preprocess_report.read_text())
    assert [p["name"] for p in saved["photos"]] == ["obama.jpg", "obama2.jpg", "biden.jpg", "obama3.jpg"]
    assert [p["kept"] for p in saved["photos"]] == [True, True, False, True]
    assert saved["photos"][2]["reason"] == "identity_outlier"
    assert saved["kept_count"] == 3 and saved["dropped_count"] == 1
    assert saved["reference_name"] == report.reference_name
    assert saved["backends"]["detector"] == "yunet"
    assert saved["backends"]["embedder"] == report.backends["embedder"]
    assert saved["caption"] == TRIGGER_CAPTION


def test_dataset_files_line_up(outlier_run):
    user, report, _ = outlier_run
    lines = metadata(user)
    embeddings = np.load(user.dataset_dir / "embeddings.npy")
    assert len(lines) == len(report.kept) == embeddings.shape[0] == 3
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert [line["source"] for line in lines] == OBAMAS
    for line in lines:
        image = read_rgb(user.dataset_dir / line["file_name"])
        mask = cv2.imread(str(user.dataset_dir / line["mask_file_name"]), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (512, 512, 3) and mask.shape == (512, 512)
        assert set(np.unique(mask)) <= {0, 255}
        assert line["text"] == TRIGGER_CAPTION
        caption = (user.dataset_dir / line["file_name"]).with_suffix(".txt").read_text()
        assert caption == TRIGGER_CAPTION
    reference = read_rgb(user.dataset_dir / report.reference_file)
    assert points_in_box(np.array(report.reference_landmarks5),
                         np.array([0, 0, reference.shape[1], reference.shape[0]]))
    assert not list(user.root.glob(".dataset-*"))  # no staging folder left behind


def test_crops_contain_the_whole_face(outlier_run, face_models):
    """The face detector, run again on each saved training image, finds the face inside it,
    landmarks and all, at roughly 1/3 of the crop (crop ratio 3)."""
    user, _, _ = outlier_run
    for line in metadata(user):
        image = read_rgb(user.dataset_dir / line["file_name"])
        inside = np.array([0, 0, 512, 512])
        assert points_in_box(np.array(line["landmarks5"]), inside)
        faces = face_models.detector.detect(image)
        assert faces, line["file_name"]
        face = max(faces, key=lambda f: f.area)
        assert points_in_box(face.landmarks5, inside)
        assert 512 / 4 < face.height < 512 / 1.5  # about a third of the crop, not cut down
        assert np.abs(face.landmarks5 - np.array(line["landmarks5"])).max() < 0.1 * face.width


def test_masks_cover_the_face_and_the_rest_is_white(outlier_run):
    user, _, _ = outlier_run
    for line in metadata(user):
        image = read_rgb(user.dataset_dir / line["file_name"])
        mask = cv2.imread(str(user.dataset_dir / line["mask_file_name"]), cv2.IMREAD_GRAYSCALE)
        for x, y in line["landmarks5"]:
            assert mask[round(y), round(x)] == 255
        x0, y0, x1, y1 = (round(v) for v in line["face_box"])
        box = mask[max(y0, 0):y1, max(x0, 0):x1]
        assert (box == 255).mean() > 0.8  # the face box is (nearly all) in the mask
        assert 0.1 < (mask == 255).mean() < 0.95  # and the mask is not everything
        # background whitened (beyond the 1.5 px-sigma feather at the mask's edge)
        outside = cv2.erode((mask == 0).astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
        assert image[outside].min() == 255
        assert image[mask == 255].mean() < 200  # the person is not


def test_saved_embeddings_score_new_images_of_the_user(outlier_run, face_models, faces_dir):
    """What the trainer's validation does with embeddings.npy: the user's other photos score as
    the same person, someone else does not, a picture without a face scores None."""
    user, _, _ = outlier_run
    references = np.load(user.dataset_dir / "embeddings.npy")
    threshold = face_models.embedder.same_person_similarity
    assert face_models.identity_score(read_rgb(faces_dir / "obama_small.jpg"), references) > threshold
    assert face_models.identity_score(read_rgb(faces_dir / "biden2.jpg"), references) < threshold
    two = face_models.identity_score(read_rgb(faces_dir / "two_people.jpg"), references)
    assert two > threshold  # Obama is one of the two
    assert face_models.identity_score(np.full((200, 200, 3), 128, np.uint8), references) is None


def test_progress_reports_every_photo(outlier_run):
    _, _, events = outlier_run
    assert [e[0] for e in events[:4]] == [0, 1, 2, 3]
    assert all(total == 4 for _, total, _ in events)
    assert events[-1][2] == "writing the dataset"


def test_the_users_face_is_chosen_in_a_photo_with_two_people(faces_dir, face_models, tmp_path):
    """two_people.jpg holds Biden and Obama: with Obama's photos it trains on Obama's face, with
    Biden's on Biden's."""
    workspace = Workspace(tmp_path)
    params = TrainParams(min_photos=3)
    chosen = {}
    for person, singles in (("obama", ["obama.jpg", "obama2.jpg"]), ("biden", ["biden.jpg", "biden2.jpg"])):
        photos = [faces_dir / n for n in [*singles, "two_people.jpg"]]
        report = preprocess_photos(photos, workspace.user(person), params, face_models)
        verdict = report.photos[-1]
        assert verdict.kept and verdict.faces_found == 2 and "of 2" in verdict.message
        chosen[person] = verdict.face_box
    assert abs(chosen["obama"][0] - chosen["biden"][0]) > 100  # different faces of the photo


def test_too_few_usable_photos_is_an_error_and_the_old_dataset_stays(
    faces_dir, face_models, tmp_path
):
    user = Workspace(tmp_path).user("someone")
    preprocess_photos([faces_dir / n for n in OBAMAS], user, TrainParams(), face_models)
    before = _snapshot(user.dataset_dir)
    photos = [faces_dir / n for n in ["obama.jpg", "biden.jpg", "kit1.jpg"]]  # three people
    with pytest.raises(PreprocessError, match=r"only 1 usable photo.*at least 3") as caught:
        preprocess_photos(photos, user, TrainParams(), face_models)
    assert [v.reason for v in caught.value.report.photos] == [None, "identity_outlier",
                                                               "identity_outlier"]
    assert "2 identity_outlier" in str(caught.value)
    assert _snapshot(user.dataset_dir) == before
    assert sorted(p.name for p in user.root.iterdir()) == ["dataset"]


def test_a_failure_while_writing_leaves_the_old_dataset(faces_dir, face_models, tmp_path, monkeypatch):
    from easyphoto_core import preprocess

    user = Workspace(tmp_path).user("someone")
    preprocess_photos([faces_dir / n for n in OBAMAS], user, TrainParams(), face_models)
    before = _snapshot(user.dataset_dir)
    calls = {"n": 0}
    real_encode = preprocess._encode_png

    def failing_encode(pixels):
        calls["n"] += 1
        if calls["n"] == 4:  # halfway through the new dataset
            raise OSError("disk full")
        return real_encode(pixels)

    monkeypatch.setattr(preprocess, "_encode_png", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        preprocess_photos([faces_dir / n for n in OBAMAS], user, TrainParams(), face_models)
    assert _snapshot(user.dataset_dir) == before
    assert sorted(p.name for p in user.root.iterdir()) == ["dataset"]


def test_an_interrupted_swap_is_recovered(faces_dir, face_models, tmp_path):
    """A crash between parking the old dataset and renaming the new one in: the next run puts
    the old one back before it starts (and replaces it only when it succeeds)."""
    user = Workspace(tmp_path).user("someone")
    preprocess_photos([faces_dir / n for n in OBAMAS], user, TrainParams(), face_models)
    before = _snapshot(user.dataset_dir)
    user.dataset_dir.rename(user.root / ".dataset-old-0123456789ab")
    (user.root / ".dataset-new-ba9876543210").mkdir()
    with pytest.raises(PreprocessError):
        preprocess_photos([faces_dir / "kit1.jpg"], user, TrainParams(), face_models)
    preprocess_photos([faces_dir / "kit1.jpg"], user, TrainParams(min_photos=1), face_models)
    assert _snapshot(user.dataset_dir) != before  # replaced by the successful run...
    assert sorted(p.name for p in user.root.iterdir()) == ["dataset"]  # ...with nothing left over


def test_recovery_restores_the_parked_dataset(tmp_path):
    from easyphoto_core.preprocess import _recover_interrupted_swap

    user = Workspace(tmp_path).user("someone")
    parked = user.root / ".dataset-old-0123456789ab"
    parked.mkdir(parents=True)
    (parked / "report.json").write_text("{}")
    _recover_interrupted_swap(user)
    assert (user.dataset_dir / "report.json").read_text() == "{}"


def test_small_photo_is_kept_by_default_and_refused_under_a_larger_minimum(faces_dir, face_models,
                                                                          tmp_path):
    """obama_small.jpg is 320x240 with a ~104 px face: above the default 64 px minimum, so it
    trains (its crop is upscaled x2.1, which the verdict says); a 128 px minimum refuses it."""
    workspace = Workspace(tmp_path)
    photo = [faces_dir / "obama_small.jpg"]
    kept = preprocess_photos(photo, workspace.user("a"), TrainParams(min_photos=1), face_models)
    verdict = kept.photos[0]
    assert verdict.kept and 90 < verdict.face_size < 128
    assert verdict.crop_scale > 2 and "upscaled x2.1" in verdict.message
    with pytest.raises(PreprocessError) as caught:
        preprocess_photos(photo, workspace.user("b"), TrainParams(min_photos=1, min_face_size=128),
                          face_models)
    assert caught.value.report.photos[0].reason == "face_too_small"
    assert "minimum is 128 px" in caught.value.report.photos[0].message


def test_skin_retouching_changes_only_skin(faces_dir, face_models, tmp_path):
    workspace = Workspace(tmp_path)
    photo = [faces_dir / "obama.jpg"]
    images = {}
    for retouch in (False, True):
        user = workspace.user(f"r{int(retouch)}")
        params = TrainParams(min_photos=1, skin_retouching=retouch)
        preprocess_photos(photo, user, params, face_models)
        line = metadata(user)[0]
        images[retouch] = read_rgb(user.dataset_dir / line["file_name"]).astype(np.int16)
    changed = np.abs(images[True] - images[False]).max(axis=2) > 0
    assert changed.sum() > 2000  # the retouch did something
    mask = cv2.imread(str(user.dataset_dir / line["mask_file_name"]), cv2.IMREAD_GRAYSCALE)
    assert np.all(mask[changed] == 255)
    x0, y0, x1, y1 = line["face_box"]
    margin = 0.1 * (x1 - x0)  # the face region is an ellipse a little wider than the box
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x0 - margin and xs.max() <= x1 + margin
    assert ys.min() >= y0 - margin and ys.max() <= y1 + margin
    for x, y in np.array(line["landmarks5"])[[0, 1, 3, 4]]:  # eyes and mouth are not skin
        assert not changed[round(y), round(x)]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_embedded_fallbacks_alone_still_make_a_usable_dataset(faces_dir, tmp_path):
    """No YuNet file (offline) and no MediaPipe: dlib's detector, landmark-placed face masks."""
    from easyphoto_core.faces import FaceModels
    from easyphoto_core.weights import WeightPaths

    models = FaceModels.load(WeightPaths.standalone(tmp_path / "empty", env={}), offline=True,
                             use_mediapipe=False)
    user = Workspace(tmp_path).user("fallback")
    photos = [faces_dir / n for n in ["obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg"]]
    report = preprocess_photos(photos, user, TrainParams(), models)
    assert [v.name for v in report.kept] == OBAMAS
    saved = json.loads(user.preprocess_report.read_text())["backends"]
    assert saved["detector"] == "dlib_hog" and saved["segmenter"] is None
    assert "face_detection_yunet_2023mar" in saved["skipped"]["yunet"]
    for line in metadata(user):
        mask = cv2.imread(str(user.dataset_dir / line["mask_file_name"]), cv2.IMREAD_GRAYSCALE)
        landmarks = np.array(line["landmarks5"])
        assert points_in_box(landmarks, np.array([0, 0, 512, 512]))
        eye_mid, mouth_mid = landmarks[:2].mean(axis=0), landmarks[3:].mean(axis=0)
        chin = mouth_mid + 0.6 * (mouth_mid - eye_mid)  # below the mouth: dlib's box stops there
        forehead = eye_mid - 0.6 * (mouth_mid - eye_mid)
        for x, y in [*landmarks, chin, forehead]:
            assert mask[round(y), round(x)] == 255
