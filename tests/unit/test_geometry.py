"""Property tests of the face geometry helpers (no models)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from easyphoto_core.faces.geometry import (
    ARCFACE_TEMPLATE_112,
    apply_transform,
    clamp_box,
    crop_transform,
    dilate_mask,
    expand_box,
    frontal_score,
    similarity_transform,
    square_crop_box,
    warp_face,
)
from tests.geometry_helpers import box_contains

FAST = settings(max_examples=150, deadline=None)


@st.composite
def image_and_box(draw: st.DrawFn) -> tuple[tuple[int, int], np.ndarray]:
    """An image size and a box inside it (real coordinates, possibly touching the edges)."""
    width = draw(st.integers(8, 4000))
    height = draw(st.integers(8, 4000))
    x0 = draw(st.floats(0, width - 2, allow_nan=False))
    y0 = draw(st.floats(0, height - 2, allow_nan=False))
    x1 = draw(st.floats(x0 + 1, width, allow_nan=False))
    y1 = draw(st.floats(y0 + 1, height, allow_nan=False))
    return (width, height), np.array([x0, y0, x1, y1])


def _inside(box: np.ndarray, size: tuple[int, int]) -> bool:
    return bool(box[0] >= 0 and box[1] >= 0 and box[2] <= size[0] and box[3] <= size[1])


@FAST
@given(image_and_box(), st.floats(1.0, 5.0))
def test_expand_box_contains_the_box_and_stays_in_the_image(sized_box, ratio):
    size, box = sized_box
    expanded = expand_box(box, ratio, size)
    assert _inside(expanded, size)
    assert box_contains(expanded, box)
    # where nothing was clamped away, the side grew by exactly `ratio`
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * ratio / 2
    if _inside(np.concatenate([centre - half, centre + half]), size):
        assert math.isclose(expanded[2] - expanded[0], (box[2] - box[0]) * ratio, rel_tol=1e-9)


@FAST
@given(image_and_box(), st.floats(1.0, 5.0))
def test_square_crop_is_square_inside_the_image_and_keeps_the_face(sized_box, ratio):
    size, box = sized_box
    crop = square_crop_box(box, ratio, size)
    side = crop[2] - crop[0]
    assert side == crop[3] - crop[1]
    assert all(float(v).is_integer() for v in crop)  # pixel-exact slicing
    assert _inside(crop, size)
    longest = max(box[2] - box[0], box[3] - box[1])
    needed = max(math.ceil(box[2]) - math.floor(box[0]), math.ceil(box[3]) - math.floor(box[1]))
    assert side == min(max(round(longest * ratio), needed), *size)
    if needed <= min(size):  # a square holding the box's pixels fits in the image
        assert box_contains(crop, box)
        centre_offset = (crop[:2] + crop[2:]) / 2 - (box[:2] + box[2:]) / 2
        if _inside(np.concatenate([crop[:2] - centre_offset, crop[2:] - centre_offset]), size):
            assert np.abs(centre_offset).max() <= 1.0  # not pushed by an edge: centred


@FAST
@given(image_and_box(), st.floats(-5000, 5000), st.floats(-5000, 5000))
def test_clamp_box_keeps_a_box_inside_and_is_idempotent(sized_box, dx, dy):
    size, box = sized_box
    moved = box + np.array([dx, dy, dx, dy])
    clamped = clamp_box(moved, size)
    assert _inside(clamped, size)
    assert np.array_equal(clamp_box(clamped, size), clamped)
    if _inside(moved, size):
        assert np.allclose(clamped, moved)


@st.composite
def similarity(draw: st.DrawFn) -> tuple[float, float, np.ndarray]:
    angle = draw(st.floats(-math.pi, math.pi))
    scale = draw(st.floats(0.05, 20.0))
    shift = np.array([draw(st.floats(-1000, 1000)), draw(st.floats(-1000, 1000))])
    return angle, scale, shift


def _apply_similarity(points: np.ndarray, angle: float, scale: float, shift: np.ndarray) -> np.ndarray:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ (scale * rotation).T + shift


@FAST
@given(similarity(), st.lists(st.tuples(st.floats(-500, 500), st.floats(-500, 500)),
                              min_size=3, max_size=8))
def test_similarity_transform_maps_landmarks_onto_their_targets(transform, raw_points):
    src = np.array(raw_points, dtype=np.float64)
    assume(np.linalg.matrix_rank(src - src.mean(axis=0), tol=1.0) == 2)  # not collinear
    dst = _apply_similarity(src, *transform)
    matrix = similarity_transform(src, dst)
    error = np.abs(apply_transform(matrix, src) - dst).max()
    assert error < 1e-6 * max(1.0, np.abs(dst).max())
    assert np.linalg.det(matrix[:, :2]) > 0  # a rotation, never a mirror


def test_similarity_transform_refuses_a_reflection():
    src = ARCFACE_TEMPLATE_112
    mirrored = src * np.array([-1.0, 1.0])  # the best linear fit would be a reflection
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@settings(max_examples=25, deadline=None)
@given(similarity())
def test_warp_face_puts_the_landmarks_pixels_on_the_template(transform):
    """Dots drawn at the landmarks land, after the real cv2 warp, on the template points."""
    angle, scale, shift = transform
    scale = min(max(scale, 1.5), 4.0)
    landmarks = _apply_similarity(ARCFACE_TEMPLATE_112 - 56, angle, scale, np.array([300.0, 300.0]))
    image = np.zeros((600, 600, 3), dtype=np.uint8)
    for x, y in landmarks:  # sub-pixel centres (shift=4: coordinates in 1/16 px)
        centre = (round(x * 16), round(y * 16))
        cv2.circle(image, centre, round(2 * scale * 16), (255, 255, 255), -1, cv2.LINE_AA, 4)
    warped, _ = warp_face(image, landmarks)
    grey = warped[..., 0].astype(np.float64)
    for tx, ty in ARCFACE_TEMPLATE_112:
        x0, y0 = int(tx) - 5, int(ty) - 5
        window = grey[y0:y0 + 11, x0:x0 + 11]
        ys, xs = np.mgrid[y0:y0 + 11, x0:x0 + 11]
        assert window.sum() > 0, f"no dot near template point ({tx:.1f}, {ty:.1f})"
        centroid = np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()
        assert np.abs(centroid - [tx, ty]).max() < 0.35


@settings(max_examples=40, deadline=None)
@given(st.integers(24, 400), st.integers(24, 400), st.integers(16, 300), st.data())
def test_crop_transform_matches_where_cv2_resize_puts_a_point(width, height, side, data):
    """A smooth blob centred on a point ends up, after crop + cv2.resize, where the transform
    says the point goes (pixel-centre convention; a wrong one is off by (scale - 1) / 2 px)."""
    crop_side = data.draw(st.integers(24, min(width, height)))
    left = data.draw(st.integers(0, width - crop_side))
    top = data.draw(st.integers(0, height - crop_side))
    sigma = 1.5 * max(1.0, crop_side / side)  # wider than an output pixel, so no aliasing
    margin = 3 * sigma
    px = data.draw(st.floats(left + margin, left + crop_side - 1 - margin))
    py = data.draw(st.floats(top + margin, top + crop_side - 1 - margin))
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2)).astype(np.float32)
    # the interpolations preprocessing uses: area when shrinking, smooth when enlarging
    interpolation = cv2.INTER_AREA if side < crop_side else cv2.INTER_LINEAR
    crop = cv2.resize(image[top:top + crop_side, left:left + crop_side], (side, side),
                      interpolation=interpolation).astype(np.float64)
    ys, xs = np.mgrid[0:side, 0:side]
    centre = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
    crop_box = np.array([left, top, left + crop_side, top + crop_side], dtype=np.float64)
    mapped = apply_transform(crop_transform(crop_box, side), np.array([[px, py]]))[0]
    assert np.abs(mapped - centre).max() < 0.1


@st.composite
def mask_and_radii(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    height, width = draw(st.integers(4, 48)), draw(st.integers(4, 48))
    cells = draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
    mask = np.array(cells, dtype=np.uint8).reshape(height, width) * 255
    small = draw(st.integers(0, 6))
    return mask, small, small + draw(st.integers(0, 6))


@FAST
@given(mask_and_radii())
def test_dilation_grows_the_mask_monotonically(case):
    mask, small, large = case
    grown_small, grown_large = dilate_mask(mask, small), dilate_mask(mask, large)
    assert set(np.unique(grown_large)) <= {0, 255}
    assert np.all(grown_small >= mask)  # contains the mask
    assert np.all(grown_large >= grown_small)  # larger radius, larger mask
    if mask.any() and not mask.all() and large > 0:
        assert (grown_large > 0).sum() > (mask > 0).sum()  # it really grows


def test_frontal_score_is_high_for_a_frontal_face_and_falls_with_yaw():
    frontal = ARCFACE_TEMPLATE_112.copy()
    frontal[2, 1] = 51.6 + 0.55 * (92.3 - 51.6)  # our detectors' nose height
    scores = []
    for shift in (0.0, 4.0, 8.0, 14.0, 20.0):  # nose moving towards one eye: the head turns
        turned = frontal.copy()
        turned[2, 0] += shift
        scores.append(frontal_score(turned))
    assert scores[0] > 0.95
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    assert scores[-1] < 0.2


@FAST
@given(similarity(), st.floats(-10, 10))
def test_frontal_score_ignores_rotation_scale_and_position(transform, nose_shift):
    face = ARCFACE_TEMPLATE_112.copy()
    face[2, 0] += nose_shift
    angle, scale, shift = transform
    moved = _apply_similarity(face, angle, scale, shift)
    assert 0.0 <= frontal_score(moved) <= 1.0
    assert math.isclose(frontal_score(moved), frontal_score(face), abs_tol=1e-6)


def test_frontal_score_is_zero_when_the_mouth_is_above_the_eyes():
    # eyes in the usual order but the mouth above them: a mirrored or broken landmark set
    mirrored = ARCFACE_TEMPLATE_112 * np.array([1.0, -1.0])
    assert frontal_score(mirrored) == 0.0
