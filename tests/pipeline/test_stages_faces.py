"""Generation stages on real photos with real face models: template faces, crops, face fusion,
the replace image, OpenPose drawing and the identity score (easyphoto_core.pipeline.stages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyphoto_core.faces import FaceModelError
from easyphoto_core.pipeline import stages
from easyphoto_core.pipeline.stages.openpose import (
    BODY_POINT_RADIUS,
    OPENPOSE_BODY_PARTS,
    OPENPOSE_COLORS,
)


def load_photo(folder: Path, name: str) -> np.ndarray:
    with Image.open(folder / name) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def pose_estimator():
    from easyphoto_core.faces.mediapipe_backend import MediaPipePose

    try:
        estimator = MediaPipePose()
    except FaceModelError as error:
        pytest.skip(f"MediaPipe pose unavailable: {error}")
    yield estimator
    estimator.close()


@pytest.fixture(scope="module")
def obama_references(faces_dir, face_models) -> np.ndarray:
    """dlib/ArcFace embeddings of person A's photos (the 'user')."""
    rows = []
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        photo = load_photo(faces_dir, name)
        face = stages.locate_main_face(photo, detector=face_models.detector)
        rows.append(face_models.embedder.embed(photo, face.detection))
    return np.stack(rows)


def locate(photo: np.ndarray, face_models) -> list[stages.LocatedFace]:
    return stages.locate_faces(photo, detector=face_models.detector, landmarks=face_models.landmarks)


# --- 1. template faces ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), [("two_people.jpg", 2), ("group6.jpg", 6)])
def test_template_faces_are_sorted_left_to_right(faces_dir, face_models, name, count):
    faces = locate(load_photo(faces_dir, name), face_models)
    assert len(faces) == count
    centres = [face.centre[0] for face in faces]
    assert centres == sorted(centres)
    paired = stages.pair_faces_with_users(faces, ["a", None, "b"][: min(3, count)])
    assert [p.position for p in paired] == list(range(count))
    assert paired[0].user_id == "a" and paired[1].user_id is None
    assert all(p.user_id is None for p in paired[3:])  # faces with no user are left alone


def test_left_face_of_two_people_is_person_a(faces_dir, face_models, obama_references):
    photo = load_photo(faces_dir, "two_people.jpg")
    left, right = locate(photo, face_models)
    threshold = face_models.embedder.same_person_similarity
    scores = [
        stages.identity_score(photo, obama_references, embedder=face_models.embedder, face=f.detection)
        for f in (left, right)
    ]
    assert scores[0].similarity >= threshold > scores[1].similarity


def test_more_user_ids_than_faces_names_both_counts(faces_dir, face_models):
    faces = locate(load_photo(faces_dir, "two_people.jpg"), face_models)
    with pytest.raises(stages.TemplateFaceError, match=r"2 faces but 3 user ids"):
        stages.pair_faces_with_users(faces, ["a", "b", "c"])


def test_pairing_errors_without_faces_or_users(faces_dir, face_models):
    background = load_photo(faces_dir, "biden.jpg")[1700:2100, 0:400]  # below the face: a suit
    faces = locate(background, face_models)
    assert faces == []
    with pytest.raises(stages.TemplateFaceError, match="no face found in the template"):
        stages.pair_faces_with_users(faces, ["a"])
    with pytest.raises(stages.TemplateFaceError, match="no face found in the reference photo"):
        stages.locate_main_face(background, detector=face_models.detector, what="reference photo")
    with pytest.raises(stages.TemplateFaceError, match="no user id"):
        stages.pair_faces_with_users(faces, [None])
    with pytest.raises(stages.TemplateFaceError, match="6 user ids chosen; at most 5"):
        stages.pair_faces_with_users(faces, list("abcdef"))


# --- 2. crop -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["group6.jpg", "biden.jpg", "obama_small.jpg"])
def test_crops_have_sides_multiple_of_8_and_short_side_512(faces_dir, face_models, name):
    photo = load_photo(faces_dir, name)
    for face in locate(photo, face_models):
        crop = stages.crop_face(photo, face, crop_ratio=3.0, short_side=512)
        height, width = crop.image.shape[:2]
        assert min(height, width) == 512 and height % 8 == 0 and width % 8 == 0
        x0, y0, x1, y1 = crop.box
        assert 0 <= x0 < x1 <= photo.shape[1] and 0 <= y0 < y1 <= photo.shape[0]
        # the face sits where the transform says: its box inside the crop, landmarks on it
        assert np.all(crop.face.box[:2] >= -1) and crop.face.box[2] <= width + 1
        back = stages.crop.scale_matrix(crop.box, crop.size)
        np.testing.assert_allclose(back, crop.matrix)
        np.testing.assert_allclose(
            crop.face.transformed(crop.inverse_matrix).landmarks5, face.landmarks5, atol=1e-6
        )


# --- 3. face fusion ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def biden_crop(faces_dir, face_models) -> stages.FaceCrop:
    photo = load_photo(faces_dir, "biden.jpg")
    (face,) = locate(photo, face_models)
    return stages.crop_face(photo, face)


@pytest.fixture(scope="module")
def obama_reference(faces_dir, face_models) -> tuple[np.ndarray, stages.LocatedFace]:
    photo = load_photo(faces_dir, "obama.jpg")
    face = stages.locate_main_face(
        photo, detector=face_models.detector, landmarks=face_models.landmarks
    )
    return photo, face


def _similarity(image, face, face_models, references) -> float:
    return stages.identity_score(
        image, references, embedder=face_models.embedder, face=face.detection,
        detector=face_models.detector,
    ).similarity


def test_face_fusion_raises_identity_similarity_to_the_user(
    biden_crop, obama_reference, face_models, obama_references
):
    photo, reference = obama_reference
    before = _similarity(biden_crop.image, biden_crop.face, face_models, obama_references)
    fused = stages.fuse_face(biden_crop.image, biden_crop.face, photo, reference, ratio=0.6)
    after = _similarity(fused.image, biden_crop.face, face_models, obama_references)
    full = stages.fuse_face(biden_crop.image, biden_crop.face, photo, reference, ratio=1.0)
    after_full = _similarity(full.image, biden_crop.face, face_models, obama_references)
    assert before < face_models.embedder.same_person_similarity  # a different person to start
    assert after > before + 0.05
    assert after_full > after
    assert fused.image.shape == biden_crop.image.shape and fused.image.dtype == np.uint8


def test_face_fusion_ratio_zero_and_outside_the_weight_leave_the_template(
    biden_crop, obama_reference
):
    photo, reference = obama_reference
    untouched = stages.fuse_face(biden_crop.image, biden_crop.face, photo, reference, ratio=0.0)
    np.testing.assert_array_equal(untouched.image, biden_crop.image)
    fused = stages.fuse_face(biden_crop.image, biden_crop.face, photo, reference, ratio=0.6)
    outside = fused.weight == 0
    np.testing.assert_array_equal(fused.image[outside], biden_crop.image[outside])
    assert fused.weight.max() <= 0.6 + 1e-6
    # the lips stay the template's, the eyes come from the user
    lips = stages.lips_mask(biden_crop.image.shape[:2], biden_crop.face) > 0
    eyes = stages.eye_mask(biden_crop.image.shape[:2], biden_crop.face) > 0
    assert fused.weight[lips].mean() < 0.2 < fused.weight[eyes].mean()


def test_face_fusion_is_deterministic(biden_crop, obama_reference):
    photo, reference = obama_reference
    first = stages.fuse_face(biden_crop.image, biden_crop.face, photo, reference, ratio=0.6)
    second = stages.fuse_face(biden_crop.image, biden_crop.face, photo, reference, ratio=0.6)
    np.testing.assert_array_equal(first.image, second.image)


def test_face_fusion_without_a_mesh_uses_five_points(biden_crop, obama_reference, face_models,
                                                     obama_references):
    photo, reference = obama_reference
    target = stages.LocatedFace(biden_crop.face.detection)
    source = stages.LocatedFace(reference.detection)
    fused = stages.fuse_face(biden_crop.image, target, photo, source, ratio=0.6)
    before = _similarity(biden_crop.image, target, face_models, obama_references)
    assert _similarity(fused.image, target, face_models, obama_references) > before + 0.03


def test_replace_image_shows_the_face_id_face_where_the_template_face_was(
    biden_crop, faces_dir, face_models, obama_references
):
    face_id = load_photo(faces_dir, "obama2.jpg")
    face_id_face = stages.locate_main_face(
        face_id, detector=face_models.detector, landmarks=face_models.landmarks
    )
    replaced = stages.replace_face(biden_crop.image, biden_crop.face, face_id, face_id_face)
    assert replaced.image.shape == biden_crop.image.shape
    similarity = _similarity(replaced.image, biden_crop.face, face_models, obama_references)
    assert similarity >= face_models.embedder.same_person_similarity
    # the warped face's landmarks lie on the template face
    eye_gap = np.linalg.norm(replaced.source_face.landmarks5 - biden_crop.face.landmarks5, axis=1)
    assert eye_gap.max() < 0.25 * biden_crop.face.detection.width


# --- 4. OpenPose ---------------------------------------------------------------------------------


def _pixels_of(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    ys, xs = np.nonzero(np.all(image == np.array(color, dtype=np.uint8), axis=2))
    return np.stack([xs, ys], axis=1)


@pytest.mark.parametrize("with_mesh", [True, False])
def test_openpose_drawing_lands_on_the_face_in_openpose_colours(
    faces_dir, face_models, pose_estimator, with_mesh
):
    photo = load_photo(faces_dir, "two_people.jpg")
    face = locate(photo, face_models)[1]
    crop = stages.crop_face(photo, face)
    crop_face = crop.face if with_mesh else stages.LocatedFace(crop.face.detection)
    body = pose_estimator.pose(crop.image) if with_mesh else None
    controls = stages.control_images(crop.image, crop_face, body=body)
    drawing = controls.openpose
    assert drawing.shape == crop.image.shape and drawing.dtype == np.uint8
    x0, y0, x1, y1 = crop_face.box
    for name in ("nose", "right_eye", "left_eye"):
        color = OPENPOSE_COLORS[OPENPOSE_BODY_PARTS.index(name)]
        pixels = _pixels_of(drawing, color)
        assert len(pixels) > 0, f"no pixel in OpenPose's {name} colour {color}"
        assert np.all((pixels[:, 0] >= x0) & (pixels[:, 0] <= x1)), name
        assert np.all((pixels[:, 1] >= y0) & (pixels[:, 1] <= y1)), name
        keypoint = controls.people[0].point(name)
        assert np.linalg.norm(pixels - keypoint, axis=1).max() <= BODY_POINT_RADIUS + 1.5
    # OpenPose's layout: the subject's right eye appears on the image's left
    person = controls.people[0]
    assert person.point("right_eye")[0] < person.point("left_eye")[0]
    # face keypoints are white dots on the face (the jaw line may pass the detector's box a
    # little at the temples)
    white = _pixels_of(drawing, (255, 255, 255))
    assert len(white) > 0
    slack = 0.05 * (x1 - x0) + 3
    assert np.all((white[:, 0] >= x0 - slack) & (white[:, 0] <= x1 + slack))
    assert np.all((white[:, 1] >= y0 - slack) & (white[:, 1] <= y1 + slack))
    assert len(person.face) == (70 if with_mesh else 5)
    if with_mesh:  # the body pose found this person's shoulders: a neck with its dimmed limb
        assert person.point("neck") is not None
        neck_limb = tuple(int(c * 0.6) for c in OPENPOSE_COLORS[12])
        assert len(_pixels_of(drawing, neck_limb)) > 0


def test_openpose_ignores_a_body_pose_of_someone_else(faces_dir, face_models, pose_estimator):
    photo = load_photo(faces_dir, "two_people.jpg")
    left, right = locate(photo, face_models)
    body = pose_estimator.pose(photo)
    assert body is not None
    nose = body.points[body.names.index("nose")]
    owner, other = (left, right) if abs(nose[0] - left.centre[0]) < abs(nose[0] - right.centre[0]) else (right, left)
    assert stages.openpose_person(owner, body=body).point("neck") is not None
    assert stages.openpose_person(other, body=body).point("neck") is None


# --- 8. identity score ---------------------------------------------------------------------------


def test_identity_score_separates_the_user_from_someone_else(
    faces_dir, face_models, obama_references
):
    scores = {}
    for name in ("obama_small.jpg", "biden2.jpg", "kit1.jpg"):
        photo = load_photo(faces_dir, name)
        face = stages.locate_main_face(photo, detector=face_models.detector)
        scores[name] = stages.identity_score(
            photo, obama_references, embedder=face_models.embedder, face=face.detection
        )
    assert scores["obama_small.jpg"].same_person and scores["obama_small.jpg"].score > 0.5
    for stranger in ("biden2.jpg", "kit1.jpg"):
        assert not scores[stranger].same_person
        assert scores[stranger].score < 0.5
    assert all(0.0 <= s.score <= 1.0 for s in scores.values())


def test_a_weak_detection_on_the_shipped_template_is_not_a_face_slot():
    """dlib's HOG detector (the offline fallback) also fires on the astronaut's suit; the one
    user id must go to her face, not to the left-most detection."""
    from easyphoto_core import MODELS_DIR
    from easyphoto_core.faces.dlib_backend import DlibDetector

    template = np.asarray(Image.open(MODELS_DIR / "templates" / "astronaut.jpg").convert("RGB"))
    detector = DlibDetector()
    assert len(detector.detect(template)) >= 2  # the weak detection is really there
    faces = stages.locate_faces(template, detector=detector)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert y1 < template.shape[0] / 2  # her face is in the upper half; the suit is below
