"""Corruptions keep shape, dtype and range, are deterministic for a seed, and change images the intended way."""

import numpy as np
import pytest

from fer_pipeline import corruptions

CORRUPTIONS = {
    "low_light": lambda images, seed: corruptions.low_light(images, gamma=2.2, brightness=0.35, read_noise=0.03, shot_noise=0.05, seed=seed),
    "glasses_band": lambda images, seed: corruptions.occlude_eyes(images, 0.375, 0.18, 0.8, intensity=0.05, opacity=1.0, shape="band"),
    "glasses_lenses": lambda images, seed: corruptions.occlude_eyes(images, 0.375, 0.2, 0.8, intensity=0.1, opacity=0.6, shape="lenses"),
    "rotate": lambda images, seed: corruptions.rotate(images, degrees=15),
    "yaw": lambda images, seed: corruptions.perspective_yaw(images, degrees=30),
    "low_resolution": lambda images, seed: corruptions.low_resolution(images, size=24),
}


def faces(dtype, shape=(5, 48, 48, 1)) -> np.ndarray:
    """Random textured images in the full range of `dtype`, seeded."""
    generator = np.random.default_rng(7)
    images = generator.integers(0, 256, shape, dtype=np.uint8)
    return images if dtype == np.uint8 else (images / 255.0).astype(dtype)


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_corruption_keeps_shape_dtype_range(name, dtype):
    images = faces(dtype)

    corrupted = CORRUPTIONS[name](images, 1)

    assert corrupted.shape == images.shape
    assert corrupted.dtype == images.dtype
    upper = 255 if dtype == np.uint8 else 1.0
    assert corrupted.min() >= 0
    assert corrupted.max() <= upper


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_accepts_three_dimensional_batch(name):
    images = faces(np.uint8, shape=(3, 48, 48))

    assert CORRUPTIONS[name](images, 1).shape == (3, 48, 48)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_deterministic_for_seed(name):
    images = faces(np.float32)

    first = CORRUPTIONS[name](images, 5)
    second = CORRUPTIONS[name](images, 5)

    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_changes_image(name):
    images = faces(np.uint8)

    corrupted = CORRUPTIONS[name](images, 1)

    changed_share = np.mean(corrupted != images)
    assert changed_share > 0.05, f"{name} changed only {changed_share:.1%} of the pixels"


def test_corruption_leaves_input_untouched():
    images = faces(np.float32)
    before = images.copy()

    for corrupt in CORRUPTIONS.values():
        corrupt(images, 1)

    np.testing.assert_array_equal(images, before)


def test_low_light_darkens():
    images = faces(np.uint8)

    mild = corruptions.low_light(images, gamma=1.5, brightness=0.6, read_noise=0.02, shot_noise=0.03, seed=1)
    severe = corruptions.low_light(images, gamma=2.2, brightness=0.35, read_noise=0.03, shot_noise=0.05, seed=1)

    assert mild.mean() < 0.75 * images.mean()
    assert severe.mean() < mild.mean()


def test_low_light_noise_depends_on_seed():
    images = faces(np.float32)

    first = corruptions.low_light(images, gamma=1.0, brightness=1.0, read_noise=0.05, shot_noise=0.0, seed=1)
    second = corruptions.low_light(images, gamma=1.0, brightness=1.0, read_noise=0.05, shot_noise=0.0, seed=2)

    assert not np.array_equal(first, second)
    # Without gamma and brightness change only the noise remains: zero mean, the set deviation.
    difference = (first - images)[(images > 0.2) & (images < 0.8)]
    assert abs(difference.mean()) < 0.005
    assert difference.std() == pytest.approx(0.05, rel=0.1)


def test_band_covers_eye_rows_only():
    images = np.full((1, 48, 48, 1), 200, dtype=np.uint8)

    covered = corruptions.occlude_eyes(images, center_row=0.375, height=0.18, width=0.8, intensity=0.0, opacity=1.0)[0, ..., 0]

    # 0.375 +- 0.09 of 48 rows: rows 14 to 21; 0.5 +- 0.4 of 48 columns: columns 5 to 42.
    assert (covered[14:22, 5:43] == 0).all()
    assert (covered[:13] == 200).all()
    assert (covered[23:] == 200).all()
    assert (covered[:, :4] == 200).all()


def test_lens_lets_face_through():
    images = np.full((1, 48, 48), 1.0, dtype=np.float32)

    covered = corruptions.occlude_eyes(images, center_row=0.375, height=0.2, width=0.8, intensity=0.0, opacity=0.6, shape="lenses")[0]

    # Lens centers at 0.3 and 0.7 of the width; between them (nose bridge) the edge of both lenses.
    assert covered[18, 14] == pytest.approx(0.4)
    assert covered[18, 33] == pytest.approx(0.4)
    assert covered[40, 24] == 1.0


def test_rotate_turns_counterclockwise():
    images = np.zeros((1, 48, 48), dtype=np.float64)
    images[0, 4:8, 22:26] = 1.0  # a spot at the top center

    rotated = corruptions.rotate(images, degrees=90)[0]

    rows, columns = np.nonzero(rotated > 0.5)
    # Counterclockwise, the top moves to the left.
    assert rows.mean() == pytest.approx(23.5, abs=1)
    assert columns.mean() == pytest.approx(5.5, abs=1)


def test_yaw_zero_degrees_is_identity():
    images = faces(np.float64)

    np.testing.assert_allclose(corruptions.perspective_yaw(images, degrees=0), images, atol=1e-9)


def test_yaw_shrinks_far_side():
    rows, columns = corruptions.yaw_source_coordinates(48, degrees=30)

    # The far (right) side shows more of the face per output row than the near (left) side.
    left_span = rows[-1, 0] - rows[0, 0]
    right_span = rows[-1, -1] - rows[0, -1]
    assert right_span > 47 > left_span
    # The turned face still fills the width.
    assert columns[24, 0] == pytest.approx(0, abs=0.5)
    assert columns[24, -1] == pytest.approx(47, abs=0.5)


def test_low_resolution_averages_blocks():
    checkerboard = (np.indices((48, 48)).sum(axis=0) % 2).astype(np.float64)[None]

    blurred = corruptions.low_resolution(checkerboard, size=24)[0]

    np.testing.assert_allclose(blurred, 0.5, atol=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: corruptions.rotate(np.full((1, 48, 48), 2.0), 15), "float images must lie in"),
        (lambda: corruptions.rotate(np.zeros((48, 40)), 15), "expected a batch of square grayscale images"),
        (lambda: corruptions.rotate(np.zeros((1, 48, 48), dtype=np.int32), 15), "expected uint8"),
        (lambda: corruptions.low_resolution(np.zeros((1, 48, 48)), 20), "size must divide 48"),
        (lambda: corruptions.occlude_eyes(np.zeros((1, 48, 48)), 0.4, 0.2, 0.8, 0.0, 1.0, shape="visor"), "occlusion shape must be one of"),
    ],
)
def test_invalid_input_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()
