"""Face backends on the real test photos with the real models (../shared; DESIGN.md §4)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from easyphoto_core.faces import FaceDetection, FaceModelError, FaceModels, majority_identity
from easyphoto_core.faces.dlib_backend import DlibDetector
from easyphoto_core.faces.insightface_backend import align_for_arcface, find_insightface_pack
from easyphoto_core.faces.regions import face_region_mask, retouch_skin, skin_mask
from easyphoto_core.faces.yunet import YuNetDetector, yunet_model_path
from easyphoto_core.weights import WeightPaths
from tests.geometry_helpers import points_in_box

PEOPLE = {
    "obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_small.jpg"],
    "biden": ["biden.jpg", "biden2.jpg"],
    "kit": ["kit1.jpg", "kit2.jpg"],
}


def load_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> dict[str, np.ndarray]:
    names = [*itertools.chain(*PEOPLE.values()), "two_people.jpg", "group6.jpg", "astronaut.png"]
    return {name: load_rgb(faces_dir / name) for name in names}


@pytest.fixture(scope="module")
def yunet(shared_weight_paths: WeightPaths) -> YuNetDetector:
    return YuNetDetector(yunet_model_path(shared_weight_paths, offline=True))


def largest(faces: list[FaceDetection]) -> FaceDetection:
    return max(faces, key=lambda face: face.area)


# --- detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "count"),
    [("group6.jpg", 6), ("two_people.jpg", 2), ("astronaut.png", 1), ("obama_small.jpg", 1)],
)
def test_yunet_finds_every_face(yunet, photos, name, count):
    faces = yunet.detect(photos[name])
    assert len(faces) == count
    for face in faces:
        assert 0.6 <= face.score <= 1.0
        assert points_in_box(face.landmarks5, face.box)
        eyes_y, mouth_y = face.landmarks5[:2, 1].mean(), face.landmarks5[3:, 1].mean()
        assert eyes_y < face.landmarks5[2, 1] < mouth_y  # eyes, nose, mouth from top to bottom
        assert face.landmarks5[0, 0] < face.landmarks5[1, 0]  # image-left eye first


def test_yunet_shrinks_big_photos_but_reports_original_coordinates(shared_weight_paths, photos):
    """obama3.jpg is 1434x2333: detection at 640 px must find the same face as at full size."""
    path = yunet_model_path(shared_weight_paths, offline=True)
    full = largest(YuNetDetector(path, max_side=4000).detect(photos["obama3.jpg"]))
    small = largest(YuNetDetector(path, max_side=640).detect(photos["obama3.jpg"]))
    # unscaled coordinates would be off by a factor 3.6; detector jitter across scales is ~10 %
    assert np.abs(small.box - full.box).max() < 0.15 * full.width
    assert np.abs(small.landmarks5 - full.landmarks5).max() < 0.08 * full.width



def test_yunet_shared_between_threads_detects_each_image_at_its_own_size(yunet, photos):
    """The detector's input size is OpenCV state; a second thread setting it between the first
    thread's setInputSize and detect would make it read its image at the wrong size. The stand-in
    gives the other thread that moment (it waits there) and checks the size detect() sees."""
    import threading

    class Racy:
        def __init__(self) -> None:
            self.size, self.mismatches, self.both_in = None, [], threading.Barrier(2)

        def setInputSize(self, size):  # noqa: N802 (OpenCV's name)
            self.size = size

        def detect(self, image):
            expected = (image.shape[1], image.shape[0])
            try:  # unlocked, the other thread sets its size and meets us here
                self.both_in.wait(timeout=0.05)
            except threading.BrokenBarrierError:  # locked: it cannot get in; carry on alone
                self.both_in.reset()
            if self.size != expected:
                self.mismatches.append((expected, self.size))
            return None, None

    detector = YuNetDetector(yunet.model_path)
    detector._detector = racy = Racy()
    images = [np.zeros((h, 40, 3), np.uint8) for h in (48, 64)]
    threads = [threading.Thread(target=lambda im=im: [detector.detect(im) for _ in range(20)])
               for im in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert racy.mismatches == []


def test_mediapipe_graphs_run_for_one_thread_at_a_time(monkeypatch):
    """A MediaPipe solution runs one graph; the wrappers are shared by the job worker and
    request threads, so `process` must never be entered by two threads at once."""
    import threading
    import time
    from types import SimpleNamespace

    from easyphoto_core.faces import mediapipe_backend

    class OneGraph:
        def __init__(self, *args, **kwargs) -> None:
            self.inside, self.overlaps = 0, 0

        def process(self, image):
            self.inside += 1
            self.overlaps += self.inside > 1
            time.sleep(0.005)  # another thread would get in here
            self.inside -= 1
            return SimpleNamespace(multi_face_landmarks=None, segmentation_mask=None,
                                   pose_landmarks=None)

    edges = frozenset({(0, 1), (1, 2)})
    solutions = SimpleNamespace(
        face_mesh=SimpleNamespace(FaceMesh=OneGraph, **{f"FACEMESH_{name}": edges for name in (
            "FACE_OVAL", "LEFT_EYE", "RIGHT_EYE", "LEFT_EYEBROW", "RIGHT_EYEBROW", "LIPS")}),
        selfie_segmentation=SimpleNamespace(SelfieSegmentation=OneGraph),
        pose=SimpleNamespace(Pose=OneGraph, PoseLandmark=[SimpleNamespace(name="NOSE")]))
    monkeypatch.setattr(mediapipe_backend, "import_mediapipe_solutions", lambda: solutions)
    image = np.zeros((64, 64, 3), np.uint8)
    face = FaceDetection(box=np.array([16.0, 16, 48, 48]), score=0.9,
                         landmarks5=np.full((5, 2), 32.0))
    mesh = mediapipe_backend.MediaPipeFaceMesh()
    segmenter = mediapipe_backend.MediaPipeSelfieSegmenter()
    pose = mediapipe_backend.MediaPipePose()
    calls = [lambda: mesh.landmarks(image, face), lambda: segmenter.person_mask(image),
             lambda: pose.pose(image)]
    threads = [threading.Thread(target=lambda call=call: [call() for _ in range(10)])
               for call in calls for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (mesh._mesh.overlaps, segmenter._segmenter.overlaps, pose._pose.overlaps) == (0, 0, 0)


def test_dlib_hog_detector_finds_the_faces_yunet_finds(yunet, photos):
    detector = DlibDetector()
    for name in ("two_people.jpg", "obama.jpg"):
        hog_faces = detector.detect(photos[name])
        yunet_faces = yunet.detect(photos[name])
        assert len(hog_faces) == len(yunet_faces)
        for face in hog_faces:  # every HOG face's eyes fall in some YuNet face's box
            assert any(points_in_box(face.landmarks5[:2], other.box) for other in yunet_faces)


def test_face_region_reaches_chin_and_forehead_whatever_the_detector(yunet, photos):
    """dlib's boxes are tighter than YuNet's; the face region must still reach the chin and forehead
    that YuNet's box spans (the 5 landmarks place it, not the box alone)."""
    detector = DlibDetector()
    for name in ("obama.jpg", "kit2.jpg", "biden2.jpg"):
        image = photos[name]
        reference = largest(yunet.detect(image))
        face = largest(detector.detect(image))
        mask = face_region_mask(image.shape[:2], face)
        cx = (reference.box[0] + reference.box[2]) / 2
        chin = (cx, reference.box[3] - 0.05 * reference.height)
        forehead = (cx, reference.box[1] + 0.08 * reference.height)
        for x, y in (chin, forehead, *face.landmarks5):
            assert mask[round(y), round(x)] == 255, (name, x, y)


# --- identity ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embeddings(face_models, yunet, photos) -> dict[str, np.ndarray]:
    names = list(itertools.chain(*PEOPLE.values()))
    return {n: face_models.embedder.embed(photos[n], largest(yunet.detect(photos[n]))) for n in names}


def test_same_person_pairs_are_closer_than_every_different_person_pair(face_models, embeddings):
    owner = {name: person for person, names in PEOPLE.items() for name in names}
    same, different = [], []
    for a, b in itertools.combinations(embeddings, 2):
        similarity = float(embeddings[a] @ embeddings[b])
        (same if owner[a] == owner[b] else different).append((similarity, a, b))
    assert min(same)[0] > max(different)[0], (min(same), max(different))
    # and the embedder's own threshold separates them
    threshold = face_models.embedder.same_person_similarity
    assert min(same)[0] >= threshold > max(different)[0]
    for vector in embeddings.values():
        assert vector.shape == (face_models.embedder.dim,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_majority_identity_picks_the_users_face_in_a_two_person_photo(face_models, yunet, photos):
    group = yunet.detect(photos["two_people.jpg"])
    group_vectors = np.stack([face_models.embedder.embed(photos["two_people.jpg"], f) for f in group])
    singles = {n: face_models.embedder.embed(photos[n], largest(yunet.detect(photos[n])))
               for n in ("obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg")}
    chosen = {}
    for person in ("obama", "biden"):
        own = [v[None, :] for n, v in singles.items() if n.startswith(person)]
        result = majority_identity([*own, group_vectors],
                                   same_person_similarity=face_models.embedder.same_person_similarity)
        chosen[person] = result.matches[-1].face_index
        assert chosen[person] is not None
    assert chosen["obama"] != chosen["biden"]  # two people in the photo: each user gets their own


def test_majority_identity_drops_the_odd_one_out(embeddings, face_models):
    names = ["obama.jpg", "kit1.jpg", "obama2.jpg", "obama3.jpg"]
    result = majority_identity([embeddings[n][None, :] for n in names],
                               same_person_similarity=face_models.embedder.same_person_similarity)
    kept = [n for n, m in zip(names, result.matches, strict=True) if m.face_index is not None]
    assert kept == ["obama.jpg", "obama2.jpg", "obama3.jpg"]
    assert result.matches[1].similarity < result.threshold


def test_majority_identity_of_photos_of_different_people_anchors_on_the_first():
    """No two photos show the same person: the first photo's face is the user's, whatever the
    rounding of each face's similarity with itself (which once decided it, run to run)."""
    rng = np.random.default_rng(3)
    faces = rng.normal(size=(3, 16)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    faces[2] *= np.float32(1.0001)  # the last face's self-similarity a hair above the others'
    result = majority_identity([f[None, :] for f in faces], same_person_similarity=0.9)
    assert [m.face_index for m in result.matches] == [0, None, None]


# --- chooser -------------------------------------------------------------------------------------


def test_face_models_report_their_backends(face_models):
    described = face_models.describe()
    assert described["detector"] == "yunet"
    assert described["embedder"] in ("dlib_resnet128",) or described["embedder"].startswith(
        "insightface")
    assert "insightface" in described["skipped"] or described["embedder"].startswith("insightface")


def test_a_missing_yunet_file_falls_back_to_dlib_with_the_reason(tmp_path):
    empty = WeightPaths.standalone(tmp_path, env={})
    models = FaceModels.load(empty, offline=True, use_mediapipe=False)
    assert models.detector.name == "dlib_hog"
    assert "face_detection_yunet_2023mar" in models.skipped["yunet"]
    assert models.describe()["skipped"]["mediapipe"] == "disabled by the caller"
    assert models.segmenter is None and models.landmarks is None


def test_a_broken_mediapipe_is_a_fallback_not_a_crash(shared_weight_paths, monkeypatch):
    """E.g. protobuf 5 next to mediapipe 0.10.21 raises at construction: no mesh, no person mask,
    the reason in the report, and preprocessing goes on with the 5-landmark fallbacks."""
    from easyphoto_core.faces import chooser

    def broken() -> None:
        raise FaceModelError("MediaPipe legacy solutions unavailable: TypeError: Descriptors")

    monkeypatch.setattr(chooser, "MediaPipeFaceMesh", broken)
    models = FaceModels.load(shared_weight_paths, offline=True)
    assert models.landmarks is None and models.segmenter is None
    assert "Descriptors" in models.describe()["skipped"]["mediapipe_landmarks"]
    assert models.detector.name == "yunet"


def test_insightface_without_a_pack_is_skipped_with_where_it_looked(tmp_path):
    with pytest.raises(FaceModelError, match=r"buffalo_l.*w600k_r50\.onnx"):
        find_insightface_pack(tmp_path)
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"")
    assert find_insightface_pack(tmp_path).name == "w600k_r50.onnx"


def test_arcface_alignment_puts_the_eyes_where_arcface_expects_them(yunet, photos):
    face = largest(yunet.detect(photos["obama.jpg"]))
    aligned = align_for_arcface(photos["obama.jpg"], face)
    assert aligned.shape == (112, 112, 3)
    # YuNet on the aligned face (upscaled so it is not tiny) finds the eyes at the template's
    found = largest(yunet.detect(cv2.resize(aligned, (448, 448), interpolation=cv2.INTER_CUBIC)))
    eyes = found.landmarks5[:2] / 4
    assert np.abs(eyes - [[38.29, 51.70], [73.53, 51.50]]).max() < 4.0


def test_real_insightface_pack_when_present(face_models, embeddings):
    if not face_models.describe()["embedder"].startswith("insightface"):
        pytest.skip("no insightface pack + onnxruntime here (optional backend): "
                    f"{face_models.skipped.get('insightface')}")
    assert face_models.embedder.dim == 512  # pragma: no cover - needs the user's pack


# --- MediaPipe and masks -------------------------------------------------------------------------


def _require(backend: object, name: str, face_models: FaceModels) -> None:
    if backend is None:
        reason = next((v for k, v in face_models.skipped.items() if k.startswith("mediapipe")), "")
        pytest.skip(f"{name} unavailable here: {reason}")


def test_face_mesh_outlines_the_face_around_the_landmarks(face_models, yunet, photos):
    _require(face_models.landmarks, "MediaPipe face mesh", face_models)
    image = photos["two_people.jpg"]
    for face in yunet.detect(image):  # each face gets its own mesh, not the neighbour's
        dense = face_models.landmarks.landmarks(image, face)
        assert dense is not None and len(dense.points) == 478
        oval = dense.region("face_oval")
        oval_box = np.array([*oval.min(axis=0), *oval.max(axis=0)])
        assert points_in_box(face.landmarks5, oval_box)
        overlap = np.minimum(oval_box[2:], face.box[2:]) - np.maximum(oval_box[:2], face.box[:2])
        assert overlap.min() > 0.6 * face.width


def test_person_segmentation_covers_the_face_and_not_the_corners(face_models, yunet, photos):
    _require(face_models.segmenter, "MediaPipe selfie segmentation", face_models)
    image = photos["obama.jpg"]
    mask = face_models.segmenter.person_mask(image)
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    face = largest(yunet.detect(image))
    for x, y in face.landmarks5:
        assert mask[round(y), round(x)] == 255
    assert mask[:20, :20].max() == 0 and mask[:20, -20:].max() == 0  # background corners


def test_pose_estimator_finds_the_nose_in_the_face(shared_weight_paths, yunet, photos):
    models = FaceModels.load(shared_weight_paths, offline=True, load_pose=True)
    try:
        _require(models.pose, "MediaPipe pose", models)
        pose = models.pose.pose(photos["obama.jpg"])
        assert pose is not None and len(pose.points) == 33 and pose.names[0] == "nose"
        assert points_in_box(pose.points[:1], largest(yunet.detect(photos["obama.jpg"])).box)
    finally:
        models.close()


def test_skin_retouch_smooths_skin_and_leaves_everything_else_exact(face_models, yunet, photos):
    image = photos["obama.jpg"]
    face = largest(yunet.detect(image))
    dense = face_models.landmarks.landmarks(image, face) if face_models.landmarks else None
    skin = skin_mask(image, face, dense)
    region = face_region_mask(image.shape[:2], face, dense)
    assert skin.sum() > 0.3 * region.sum()  # most of the face is skin
    assert np.all(region[skin > 0] > 0)  # and skin lies inside the face
    for x, y in face.landmarks5[[0, 1, 3, 4]]:  # eyes and mouth corners are not skin
        assert skin[round(y), round(x)] == 0
    retouched = retouch_skin(image, skin)
    assert np.array_equal(retouched[skin == 0], image[skin == 0])
    inner = cv2.erode(skin, np.ones((9, 9), np.uint8))  # away from the feathered border

    def roughness(picture: np.ndarray) -> float:  # high-frequency energy on the skin
        grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return float(np.abs(cv2.Laplacian(grey, cv2.CV_64F))[inner > 0].mean())

    assert roughness(retouched) < 0.85 * roughness(image)
