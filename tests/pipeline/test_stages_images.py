"""Generation stages as image arithmetic: masks, colour shift, paste-back, control images and
crop sizes, on real photos and as properties (hypothesis) over generated geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from easyphoto_core.faces import ARCFACE_TEMPLATE_112, FaceDetection, apply_transform
from easyphoto_core.params import GenerateParams
from easyphoto_core.pipeline import stages
from easyphoto_core.pipeline.stages.crop import crop_box_for, crop_output_size
from easyphoto_core.pipeline.stages.openpose import (
    LIMB_DIMMING,
    OPENPOSE_BODY_PARTS,
    OPENPOSE_COLORS,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_photo(folder, name: str) -> np.ndarray:
    with Image.open(folder / name) as image:
        return np.asarray(image.convert("RGB"))


def synthetic_face(centre: tuple[float, float], size: float, angle: float) -> stages.LocatedFace:
    """A face without a mesh: ArcFace's 5 points scaled to a `size`-pixel box, turned by
    `angle` degrees about `centre` (the box is that of the unturned face)."""
    scale = size / 112.0
    theta = np.radians(angle)
    rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    offset = np.asarray(centre) - rotation @ np.array([56.0, 56.0])
    matrix = np.hstack([rotation, offset[:, None]])
    half = size / 2
    box = np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
    landmarks = apply_transform(matrix, ARCFACE_TEMPLATE_112)
    return stages.LocatedFace(FaceDetection(box=box, landmarks5=landmarks, score=0.9))


@pytest.fixture(scope="module")
def two_people_crops(faces_dir, face_models):
    photo = load_photo(faces_dir, "two_people.jpg")
    faces = stages.locate_faces(
        photo, detector=face_models.detector, landmarks=face_models.landmarks
    )
    return photo, [stages.crop_face(photo, face) for face in faces]


# --- masks ---------------------------------------------------------------------------------------


def test_masks_cover_the_face_box(two_people_crops):
    _, crops = two_people_crops
    dilation = GenerateParams().mask_dilation
    for crop in crops:
        masks = stages.face_masks(crop.image.shape[:2], crop.face, dilation=dilation)
        x0, y0, x1, y1 = (int(round(v)) for v in crop.face.box)
        inside = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        assert (masks.face[inside] > 0).mean() > 0.95
        assert np.all(masks.paste_weight[inside] > 0)  # pasting reaches the box's corners
        for point in crop.face.landmarks5:
            assert masks.face[int(point[1]), int(point[0])] == 255
        # the ring crosses the face mask's edge; eyes and lips are in it
        assert masks.ring[masks.eyes > 0].min() == 255 and masks.ring[masks.lips > 0].min() == 255
        cx, cy = (int(v) for v in crop.face.centre)
        assert masks.paste_weight[cy, cx] == 1.0
        assert np.all(masks.paste_weight[masks.face > 0] == 1.0)


def test_mask_dilation_grows_the_face_mask(two_people_crops):
    _, crops = two_people_crops
    shape, face = crops[0].image.shape[:2], crops[0].face
    small = stages.face_masks(shape, face, dilation=0.0).face
    large = stages.face_masks(shape, face, dilation=0.3).face
    assert np.all(large[small > 0] == 255) and (large > 0).sum() > 1.3 * (small > 0).sum()


@PROPERTY
@given(
    cx=st.floats(100, 400), cy=st.floats(100, 400), size=st.floats(40, 200),
    angle=st.floats(-40, 40), dilation=st.floats(0.0, 0.5),
)
def test_mask_properties_without_a_mesh(cx, cy, size, angle, dilation):
    face = synthetic_face((cx, cy), size, angle)
    masks = stages.face_masks((512, 512), face, dilation=dilation)
    for name in ("face", "ring", "eyes", "lips"):
        mask = getattr(masks, name)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert masks.paste_weight.dtype == np.float32
    assert masks.paste_weight.min() >= 0.0 and masks.paste_weight.max() <= 1.0
    for x, y in face.landmarks5:
        if 0 <= x < 512 and 0 <= y < 512:
            assert masks.face[int(y), int(x)] == 255
            assert masks.paste_weight[int(y), int(x)] == 1.0
    assert not np.any(masks.eyes & masks.lips)


@PROPERTY
@given(
    seed=st.integers(0, 2**16), radius=st.integers(0, 12),
    shape=st.tuples(st.integers(16, 80), st.integers(16, 80)),
)
def test_feather_inside_never_reaches_outside_the_mask(seed, radius, shape):
    rng = np.random.default_rng(seed)
    mask = (rng.random(shape) > 0.6).astype(np.uint8) * 255
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    weight = stages.feather_inside(mask, radius)
    assert weight.dtype == np.float32 and weight.shape == mask.shape
    assert np.all(weight[mask == 0] == 0.0)
    assert weight.min() >= 0.0 and weight.max() <= 1.0


# --- colour shift --------------------------------------------------------------------------------


def _lab_distance(a: stages.LabStats, b: stages.LabStats) -> float:
    return float(np.linalg.norm(a.mean - b.mean) + np.linalg.norm(a.std - b.std))


def test_color_shift_moves_lab_stats_toward_the_template_face(two_people_crops):
    _, crops = two_people_crops
    crop = crops[0]
    masks = stages.face_masks(crop.image.shape[:2], crop.face)
    # a "generated" face that came out too warm and too bright
    cast = np.clip(crop.image * np.array([1.15, 1.0, 0.8]) + 20, 0, 255).astype(np.uint8)
    target = stages.lab_stats(crop.image, masks.face)
    before = _lab_distance(stages.lab_stats(cast, masks.face), target)
    shifted = stages.color_shift(cast, crop.image, mask=masks.face, weight=masks.paste_weight)
    after = _lab_distance(stages.lab_stats(shifted, masks.face), target)
    assert after < 0.35 * before
    outside = masks.paste_weight == 0
    np.testing.assert_array_equal(shifted[outside], cast[outside])
    unchanged = stages.color_shift(cast, crop.image, mask=masks.face, strength=0.0)
    np.testing.assert_array_equal(unchanged, cast)


@PROPERTY
@given(
    seed=st.integers(0, 2**16),
    gain=st.floats(0.6, 1.4), offset=st.floats(-40, 40),
)
def test_color_shift_property_stats_approach_and_outside_is_kept(seed, gain, offset):
    rng = np.random.default_rng(seed)
    reference = rng.integers(60, 200, size=(48, 64, 3), dtype=np.uint8)
    reference = cv2.GaussianBlur(reference, (0, 0), 2)
    image = np.clip(reference * gain + offset, 0, 255).astype(np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    cv2.circle(mask, (32, 24), 18, 255, -1)
    target = stages.lab_stats(reference, mask)
    before = _lab_distance(stages.lab_stats(image, mask), target)
    shifted = stages.color_shift(image, reference, mask=mask)
    after = _lab_distance(stages.lab_stats(shifted, mask), target)
    assert after <= before + 0.5  # rounding to uint8 costs up to ~0.5
    np.testing.assert_array_equal(shifted[mask == 0], image[mask == 0])


# --- paste back ----------------------------------------------------------------------------------


def test_paste_back_keeps_the_template_outside_the_feathered_region(two_people_crops):
    template, crops = two_people_crops
    pieces = []
    for crop in crops:
        masks = stages.face_masks(crop.image.shape[:2], crop.face)
        generated = 255 - crop.image  # as different from the template as it gets
        pieces.append(stages.PastePiece(image=generated, crop=crop, weight=masks.paste_weight))
    result = stages.paste_faces(template, pieces)
    assert result.image.shape == template.shape and result.image.dtype == np.uint8
    untouched = result.weight == 0
    np.testing.assert_array_equal(result.image[untouched], template[untouched])
    assert untouched.mean() > 0.6  # most of the photo is background
    in_a_crop = np.zeros(template.shape[:2], bool)
    for crop in crops:
        x0, y0, x1, y1 = crop.box
        in_a_crop[y0:y1, x0:x1] = True
    assert np.all(result.weight[~in_a_crop] == 0)
    changed = np.any(result.image != template, axis=2)
    for crop in crops:
        # the face itself was replaced
        fx0, fy0, fx1, fy1 = (int(v) for v in crop.face.transformed(crop.inverse_matrix).box)
        assert changed[max(fy0, 0):fy1, max(fx0, 0):fx1].mean() > 0.9
    # the seam mask: the feathered band (0 < weight < 1) grown, nothing far from it
    seams = stages.seam_mask(result.weight, width=6)
    band = (result.weight > 0) & (result.weight < 1)
    assert band.any() and np.all(seams[band] == 255)
    assert not np.any(seams[cv2.dilate(band.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0])


def test_paste_accepts_a_larger_second_pass_result(two_people_crops):
    template, crops = two_people_crops
    crop = crops[1]
    masks = stages.face_masks(crop.image.shape[:2], crop.face)
    width, height = crop.size
    larger = cv2.resize(crop.image, (width * 3 // 2, height * 3 // 2), interpolation=cv2.INTER_CUBIC)
    result = stages.paste_face(template, larger, crop, weight=masks.paste_weight)
    assert result.image.shape == template.shape
    untouched = result.weight == 0
    np.testing.assert_array_equal(result.image[untouched], template[untouched])
    # pasting the template's own crop back changes the face region only by resampling
    x0, y0, x1, y1 = crop.box
    difference = np.abs(result.image[y0:y1, x0:x1].astype(int) - template[y0:y1, x0:x1])
    assert difference.mean() < 3.0


@PROPERTY
@given(
    seed=st.integers(0, 2**16),
    size=st.tuples(st.integers(40, 160), st.integers(40, 160)),
    box=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0.2, 1), st.floats(0.2, 1)),
    scale=st.floats(0.5, 3.0),
)
def test_paste_property_zero_weight_is_bit_identical(seed, size, box, scale):
    rng = np.random.default_rng(seed)
    width, height = size
    template = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    x0 = int(box[0] * (width - 8))
    y0 = int(box[1] * (height - 8))
    x1 = min(width, x0 + max(8, int(box[2] * width)))
    y1 = min(height, y0 + max(8, int(box[3] * height)))
    crop_box = (x0, y0, x1, y1)
    crop_size = (max(8, int((x1 - x0) * scale)), max(8, int((y1 - y0) * scale)))
    matrix = stages.crop.scale_matrix(crop_box, crop_size)
    face = synthetic_face((crop_size[0] / 2, crop_size[1] / 2), min(crop_size) / 3, 0.0)
    crop = stages.FaceCrop(
        image=np.zeros((crop_size[1], crop_size[0], 3), np.uint8), box=crop_box, matrix=matrix,
        face=face,
    )
    mask = np.zeros((crop_size[1], crop_size[0]), np.uint8)
    cv2.circle(mask, (crop_size[0] // 2, crop_size[1] // 2), min(crop_size) // 3, 255, -1)
    weight = stages.feather_inside(mask, 3)
    generated = rng.integers(0, 256, size=(crop_size[1], crop_size[0], 3), dtype=np.uint8)
    result = stages.paste_face(template, generated, crop, weight=weight)
    assert result.image.shape == template.shape
    untouched = result.weight == 0
    np.testing.assert_array_equal(result.image[untouched], template[untouched])
    outside = np.ones((height, width), bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(result.weight[outside] == 0)


# --- crop sizes ----------------------------------------------------------------------------------


@PROPERTY
@given(
    image_size=st.tuples(st.integers(64, 3000), st.integers(64, 3000)),
    box=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0.02, 0.6)),
    ratio=st.floats(1.0, 5.0),
    short_side=st.sampled_from([256, 512, 768, 1024]),
)
def test_crop_property_sides_and_transform(image_size, box, ratio, short_side):
    width, height = image_size
    side = max(4.0, box[2] * min(width, height))
    x0, y0 = box[0] * (width - side), box[1] * (height - side)
    face_box = np.array([x0, y0, x0 + side, y0 + side])
    crop_box = crop_box_for(face_box, (width, height), ratio)
    assert 0 <= crop_box[0] < crop_box[2] <= width and 0 <= crop_box[1] < crop_box[3] <= height
    out_w, out_h = crop_output_size(crop_box[2] - crop_box[0], crop_box[3] - crop_box[1], short_side)
    assert out_w % 8 == 0 and out_h % 8 == 0 and min(out_w, out_h) == short_side
    # the aspect ratio is kept to within the rounding of the long side to a multiple of 8
    aspect = (crop_box[2] - crop_box[0]) / (crop_box[3] - crop_box[1])
    assert abs(out_w / out_h - aspect) <= 4.0 / min(out_w, out_h) * max(aspect, 1.0) + 1e-9
    matrix = stages.crop.scale_matrix(crop_box, (out_w, out_h))
    corners = apply_transform(matrix, [[crop_box[0] - 0.5, crop_box[1] - 0.5],
                                       [crop_box[2] - 0.5, crop_box[3] - 0.5]])
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [out_w - 0.5, out_h - 0.5]], atol=1e-6)


# --- control images ------------------------------------------------------------------------------


def test_canny_control_is_opencv_canny_with_controlnet_defaults(two_people_crops):
    _, crops = two_people_crops
    image = crops[0].image
    control = stages.canny_control(image)
    assert control.shape == image.shape and set(np.unique(control)) <= {0, 255}
    np.testing.assert_array_equal(control[..., 0], cv2.Canny(image, 100, 200))
    assert np.all(control[..., 0] == control[..., 2])
    assert 0.01 < (control > 0).mean() < 0.3


def test_color_and_tile_controls(two_people_crops):
    _, crops = two_people_crops
    image = crops[0].image
    color = stages.color_control(image)
    assert color.shape == image.shape
    height, width = image.shape[:2]
    cell_w, cell_h = width / (width // 64), height / (height // 64)
    assert len(np.unique(color.reshape(-1, 3), axis=0)) <= (width // 64) * (height // 64)
    block = color[: int(cell_h) - 1, : int(cell_w) - 1].reshape(-1, 3)
    assert len(np.unique(block, axis=0)) == 1
    np.testing.assert_array_equal(stages.tile_control(image), image)
    tile = stages.tile_control(image, rate=2.0)
    assert tile.shape == image.shape
    assert 0 < np.abs(tile.astype(int) - image).mean() < 20


def test_openpose_drawing_follows_the_annotator_for_a_full_body():
    """Every keypoint present: limbs in 0.6 x their colour, keypoints in full colour."""
    body = np.array([[100 + 10 * i, 60 + 25 * (i % 5)] for i in range(18)], dtype=np.float64)
    person = stages.OpenPosePerson(body=body, face=np.zeros((0, 2)))
    drawing = stages.draw_openpose([person], (400, 240))
    for index, color in enumerate(OPENPOSE_COLORS):
        x, y = (int(v) for v in body[index])
        assert tuple(drawing[y, x]) == color, OPENPOSE_BODY_PARTS[index]
    dimmed = {tuple(int(c * LIMB_DIMMING) for c in color) for color in OPENPOSE_COLORS[:17]}
    found = {tuple(p) for p in drawing.reshape(-1, 3)}
    assert len(dimmed & found) >= 10  # most limbs show somewhere between keypoints
