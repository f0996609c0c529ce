"""mesonet.faces: MTCNN detection on real faces, alignment geometry, tracking."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mesonet.faces import (
    CachingDetector,
    Face,
    FaceDetector,
    MTCNNDetector,
    align_face,
    assign_tracks,
    box_iou,
    create_detector,
    crop_whole,
    eye_angle,
)
from mesonet.media import iter_video_frames, probe_video, read_image, sample_frame_indices

TEST_IMAGES = Path("reference", "mesonet-keras", "test_images")


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector()


def _shared(shared_dir: Path, *parts: str | Path) -> Path:
    path = shared_dir.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="module")
def face_images(shared_dir: Path) -> list[np.ndarray]:
    """The authors' four test images: one centred face each, 208-342 px."""
    folder = _shared(shared_dir, TEST_IMAGES)
    return [read_image(p) for p in sorted(folder.glob("*/*.jpg"))]


def _rotate(image: np.ndarray, degrees: float, pad: int = 100) -> np.ndarray:
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
    h, w = padded.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(padded, matrix, (w, h))


# --------------------------------------------------------------------------- detection


def test_create_detector() -> None:
    det = create_detector("mtcnn", min_face_size=30, max_side=320)
    assert isinstance(det, MTCNNDetector) and isinstance(det, FaceDetector)
    assert (det.min_face_size, det.max_side) == (30, 320)
    with pytest.raises(ValueError, match="unknown face detector"):
        create_detector("nope")


def test_detects_real_face(detector: MTCNNDetector, face_images: list[np.ndarray]) -> None:
    image = face_images[2]  # real/real00240.jpg, 256 x 256
    (faces,) = detector.detect([image])
    assert len(faces) == 1
    face = faces[0]
    assert face.confidence > 0.95
    x, y, w, h = face.box
    assert x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256 and w > 100 and h > 100
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lex < nx < rex and lex < rex and mlx < mrx
    assert max(ley, rey) < ny < min(mly, mry)  # eyes above nose above mouth
    for px, py in face.landmarks:
        assert x <= px <= x + w and y <= py <= y + h


def test_several_faces_mapped_to_source_pixels(face_images: list[np.ndarray]) -> None:
    canvas = np.full((900, 1600, 3), 128, np.uint8)
    tiles = [(50, 100), (600, 400), (1200, 150)]  # (x, y) of each pasted image
    for image, (tx, ty) in zip(face_images[:3], tiles, strict=True):
        canvas[ty : ty + image.shape[0], tx : tx + image.shape[1]] = image
    detector = MTCNNDetector(max_side=640)  # the canvas is shrunk 2.5x to detect
    (faces,) = detector.detect([canvas])
    assert len(faces) == 3
    found = sorted(faces, key=lambda f: f.box[0])
    for face, image, (tx, ty) in zip(found, face_images[:3], tiles, strict=True):
        cx, cy = face.center
        assert tx < cx < tx + image.shape[1] and ty < cy < ty + image.shape[0]
        assert face.box[2] > 0.4 * image.shape[1]  # source-pixel size, not detection pixels
    # The same face detected alone gives the same box, shifted by its tile offset (within
    # MTCNN's jitter: 4 detection pixels at the canvas' 2.5x shrink).
    (alone,) = MTCNNDetector().detect([face_images[0]])
    ax, ay, aw, _ = alone[0].box
    bx, by, bw, _ = found[0].box
    assert abs(bx - tiles[0][0] - ax) <= 10 and abs(by - tiles[0][1] - ay) <= 10
    assert abs(bw - aw) < 12


def test_no_face_on_blank_or_noise(detector: MTCNNDetector) -> None:
    blank = np.full((480, 640, 3), 200, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tiny = np.zeros((8, 8, 3), np.uint8)
    assert detector.detect([blank, noise, tiny]) == [[], [], []]
    assert detector.detect([]) == []


def test_input_validation(detector: MTCNNDetector, face_images: list[np.ndarray]) -> None:
    gray = cv2.cvtColor(face_images[2], cv2.COLOR_RGB2GRAY)
    assert len(detector.detect([gray])[0]) == 1  # grayscale is promoted to RGB
    with pytest.raises(ValueError, match="uint8"):
        detector.detect([face_images[2].astype(np.float32) / 255])
    with pytest.raises(ValueError):
        MTCNNDetector(confidence=1.5)


def test_raw_output_mapping_filtering_and_order() -> None:
    """Canned MTCNN output on a 2x-shrunk frame: scaled back, clipped, filtered, sorted."""
    detector = MTCNNDetector(min_face_size=40, confidence=0.9, max_side=640)
    seen = {}

    def keypoints(x: int, y: int) -> dict[str, tuple[int, int]]:
        names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        return {name: (x + i, y + i) for i, name in enumerate(names)}

    def fake_detect_faces(image: np.ndarray) -> list[dict]:
        seen["shape"] = image.shape
        seen["min_face_size"] = detector._mtcnn.min_face_size
        return [
            {"box": [10, 20, 30, 40], "confidence": 0.95, "keypoints": keypoints(15, 25)},
            {"box": [100, 100, 50, 50], "confidence": 0.5, "keypoints": keypoints(0, 0)},
            {"box": [620, 300, 40, 40], "confidence": 0.99, "keypoints": keypoints(630, 310)},
        ]

    detector._mtcnn.detect_faces = fake_detect_faces
    (faces,) = detector.detect([np.zeros((720, 1280, 3), np.uint8)])
    assert seen == {"shape": (360, 640, 3), "min_face_size": 20}  # 40 source px -> 20
    assert [f.confidence for f in faces] == [0.99, 0.95]  # 0.5 dropped, best first
    assert faces[0].box == (1240.0, 600.0, 40.0, 80.0)  # x2, then clipped at the right edge
    assert faces[1].box == (20.0, 40.0, 60.0, 80.0)
    assert faces[1].landmarks[0] == (30.0, 50.0) and faces[1].landmarks[4] == (38.0, 58.0)


def test_detects_faces_in_ffpp_video(shared_dir: Path, detector: MTCNNDetector) -> None:
    video = _shared(shared_dir, "datasets", "ffpp-c40-videos", "real", "youtube__183.mp4")
    info = probe_video(video)
    frames = list(iter_video_frames(video, sample_frame_indices(info, frames=4)))
    results = detector.detect([f.image for f in frames])
    assert len(results) == 4 and all(len(faces) >= 1 for faces in results)
    ids = assign_tracks(results)
    assert all(frame_ids[0] == 0 for frame_ids in ids)  # the anchor keeps one track


# --------------------------------------------------------------------------- alignment


def _blob_centres(crop: np.ndarray) -> list[tuple[float, float]]:
    mask = (crop[:, :, 0] > 128).astype(np.uint8)
    n, _, _, centres = cv2.connectedComponentsWithStats(mask)
    return sorted((float(cx), float(cy)) for cx, cy in centres[1:n])


@pytest.mark.parametrize("degrees", [0.0, 20.0, -35.0])
def test_align_levels_synthetic_eyes(degrees: float) -> None:
    """Two white dots as eyes, rolled by ``degrees``: the crop has them level and centred."""
    image = np.zeros((400, 500, 3), np.uint8)
    centre = np.array([250.0, 200.0])
    theta = np.radians(degrees)
    offset = 40.0 * np.array([np.cos(theta), np.sin(theta)])
    eyes = [tuple(centre - offset), tuple(centre + offset)]
    for ex, ey in eyes:
        centre_fixed = (round(ex * 16), round(ey * 16))  # sub-pixel centre (shift=4)
        cv2.circle(image, centre_fixed, 6 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    face = Face(
        box=(190.0, 140.0, 120.0, 120.0),
        landmarks=(*eyes, eyes[0], eyes[0], eyes[1]),
        confidence=1.0,
    )
    assert eye_angle(face) == pytest.approx(degrees, abs=1e-6)
    crop = align_face(image, face, size=256, margin=1.3)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    (lx, ly), (rx, ry) = _blob_centres(crop)
    assert abs(ly - ry) < 1.0
    scale = 256 / (1.3 * 120)
    assert rx - lx == pytest.approx(80 * scale, abs=1.5)  # eye distance scaled by the crop
    # The eye midpoint is the box centre here, so it lands at the crop centre.
    assert (lx + rx) / 2 == pytest.approx(128, abs=1.0)
    assert (ly + ry) / 2 == pytest.approx(128, abs=1.0)


def test_align_real_face_rotated(detector: MTCNNDetector, face_images: list[np.ndarray]) -> None:
    rotated = _rotate(face_images[2], 20.0)
    (faces,) = detector.detect([rotated])
    assert len(faces) == 1 and abs(eye_angle(faces[0])) > 15  # really tilted
    crop = align_face(rotated, faces[0])
    (again,) = detector.detect([crop])
    assert len(again) == 1
    (_, ly), (_, ry) = again[0].landmarks[:2]
    assert abs(ly - ry) < 6  # eyes level within a few pixels of 256
    assert abs(eye_angle(again[0])) < 4


def test_align_face_at_edge_borders() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    face = Face(box=(-20.0, -20.0, 60.0, 60.0), landmarks=(), confidence=1.0)
    constant = align_face(image, face, size=64)
    assert constant.shape == (64, 64, 3)
    assert constant[0, 0].tolist() == [0, 0, 0] and constant[-1, -1].tolist() == [200] * 3
    replicate = align_face(image, face, size=64, border="replicate")
    assert (replicate == 200).all()
    with pytest.raises(ValueError):
        align_face(image, face, border="wrap")


def test_align_antialiases_large_faces() -> None:
    """A 1-pixel checkerboard shrunk 4x should average to grey, not alias into stripes."""
    board = (np.indices((1200, 1200)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(board[:, :, None], 3, axis=2)
    face = Face(box=(200.0, 200.0, 600.0, 600.0), landmarks=(), confidence=1.0)
    crop = align_face(image, face, size=256, margin=1.3)  # 780 px, inside the image
    assert crop.std() < 10 and abs(crop.mean() - 127.5) < 5


def test_crop_whole() -> None:
    image = np.random.default_rng(0).integers(0, 256, (120, 300, 3), dtype=np.uint8)
    out = crop_whole(image, size=256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert crop_whole(image[:10, :10], size=32).shape == (32, 32, 3)


def test_face_scaled() -> None:
    face = Face(box=(10.0, 20.0, 30.0, 40.0), landmarks=((1.0, 2.0),), confidence=0.5)
    big = face.scaled(2.0)
    assert big.box == (20.0, 40.0, 60.0, 80.0) and big.landmarks == ((2.0, 4.0),)
    assert big.confidence == 0.5 and face.center == (25.0, 40.0) and face.area == 1200.0


# --------------------------------------------------------------------------- tracking


def _face(x: float, y: float, size: float = 50.0) -> Face:
    return Face(box=(x, y, size, size), landmarks=(), confidence=1.0)


def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_tracks_follow_moving_faces_in_any_order() -> None:
    frames = [
        [_face(0, 0), _face(300, 0)],
        [_face(310, 5), _face(10, 5)],  # listed in the other order
        [_face(20, 10), _face(320, 10)],
    ]
    assert assign_tracks(frames) == [[0, 1], [1, 0], [0, 1]]


def test_tracks_match_by_distance_when_boxes_do_not_overlap() -> None:
    frames = [[_face(0, 0, 100)], [_face(45, 0, 100)], [_face(400, 0, 100)]]
    # 45 px is IoU 0.38 -> same; then a jump of 3.5 face sizes -> new person.
    assert assign_tracks(frames) == [[0], [0], [1]]
    far = [[_face(0, 0, 40)], [_face(42, 0, 40)]]  # no overlap, but 1.05 sizes away
    assert assign_tracks(far, max_distance=0.5) == [[0], [1]]
    assert assign_tracks(far, max_distance=1.1) == [[0], [0]]


def test_tracks_survive_short_gaps_and_ids_are_never_reused() -> None:
    a, b = _face(0, 0), _face(300, 0)
    frames = [[a, b], [a], [], [a, b], [], [], [], [b]]
    ids = assign_tracks(frames, max_gap=2)
    # b misses 2 frames and keeps id 1; then misses 3 and comes back as a new track 2.
    assert ids == [[0, 1], [0], [], [0, 1], [], [], [], [2]]
    assert assign_tracks([]) == []
    assert assign_tracks([[], []]) == [[], []]


def test_tracks_one_to_one() -> None:
    """Two faces close to one track: only the best match inherits it."""
    frames = [[_face(100, 100)], [_face(105, 100), _face(120, 100)]]
    assert assign_tracks(frames) == [[0], [0, 1]]


def test_caching_detector_searches_each_distinct_image_once() -> None:
    class Counting:
        def __init__(self) -> None:
            self.seen = 0

        def detect(self, images):
            self.seen += len(images)
            return [[Face((float(im[0, 0, 0]), 0.0, 4.0, 4.0), (), 0.9)] for im in images]

    inner = Counting()
    cached = CachingDetector(inner)
    a, b = np.full((8, 8, 3), 1, np.uint8), np.full((8, 8, 3), 2, np.uint8)
    first = cached.detect([a, b, a.copy()])
    assert inner.seen == 2 and [f[0].box[0] for f in first] == [1.0, 2.0, 1.0]
    again = cached.detect([b.copy(), a])  # decoded again: the same pixels, other arrays
    assert inner.seen == 2 and [f[0].box[0] for f in again] == [2.0, 1.0]
    # same bytes, other shape: another image
    cached.detect([np.full((4, 16, 3), 1, np.uint8)])
    assert inner.seen == 3
