"""Image corruptions that simulate hard capture conditions: low light, glasses, head angle, low resolution.

Every public function takes a batch of grayscale faces, shape (n, 48, 48, 1) or
(n, 48, 48), either uint8 in 0-255 or float in [0, 1], and returns a new array
of the same shape, dtype and range. Only the sensor noise of `low_light` is
random, and it is drawn from `seed`, so a seed always gives the same output.
The `robustness` section of params.yaml names the conditions that `evaluate`
applies to the test split; the table lists each corruption's parameters.

| corruption | parameters | what it simulates |
| --- | --- | --- |
| `low_light` | `gamma` (> 1 darkens mid-tones more than highlights), `brightness` (multiplier, 0-1), `read_noise` and `shot_noise` (standard deviations on the 0-1 scale) | an underexposed camera: `brightness * x ** gamma`, then Gaussian noise with variance `read_noise**2 + shot_noise**2 * signal`, the usual Gaussian approximation of a sensor's Poisson-Gaussian noise |
| `occlude_eyes` | `center_row`, `height`, `width` (fractions of the image), `intensity` (gray level 0-1 of the occluder), `opacity` (0-1), `shape` (`band` or `lenses`) | dark glasses as one band over both eyes, or two tinted lenses that let part of the face through |
| `rotate` | `degrees` (positive turns the face counterclockwise) | a tilted head (roll) |
| `perspective_yaw` | `degrees` (positive turns the face towards the viewer's right) | a head turned sideways (yaw), as a plane turned about the vertical axis |
| `low_resolution` | `size` (a divisor of 48: 24, 16, 12) | a distant or low-resolution camera: area-average down to `size`x`size`, bilinear back up to 48x48 |

Geometric corruptions fill pixels that come from outside the image with the
nearest edge pixel, so no black corners change the image's brightness.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fer_pipeline.params import OCCLUSION_SHAPES

# Distance of the pinhole camera from the face plane, in half image widths.
# Closer cameras exaggerate the perspective of the yaw warp.
YAW_CAMERA_DISTANCE = 3.0


def low_light(
    images: np.ndarray, gamma: float, brightness: float, read_noise: float, shot_noise: float, seed: int
) -> np.ndarray:
    """Darken with a gamma curve and a brightness factor, then add sensor-like noise drawn from `seed`."""
    faces = to_unit_float(images)
    generator = np.random.default_rng(seed)

    dark = darken(faces, gamma, brightness)
    noisy = add_sensor_noise(dark, read_noise, shot_noise, generator)
    return from_unit_float(noisy, images)


def occlude_eyes(
    images: np.ndarray,
    center_row: float,
    height: float,
    width: float,
    intensity: float,
    opacity: float,
    shape: str = "band",
) -> np.ndarray:
    """Blend a dark band (or two lenses) over the eye region of every face."""
    faces = to_unit_float(images)
    count, size = faces.shape[0], faces.shape[1]

    masks = occlusion_masks(
        size, np.full(count, center_row), np.full(count, height), np.full(count, width), shape
    )
    covered = blend(faces, masks * opacity, intensity)
    return from_unit_float(covered, images)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate every face about the image center; positive degrees turn it counterclockwise."""
    faces = to_unit_float(images)
    count = faces.shape[0]

    rotated = affine_warp(
        faces,
        angles=np.full(count, degrees),
        scales=np.ones(count),
        shifts=np.zeros((count, 2)),
        flips=np.zeros(count, dtype=bool),
    )
    return from_unit_float(rotated, images)


def perspective_yaw(images: np.ndarray, degrees: float) -> np.ndarray:
    """Warp every face as a plane turned `degrees` about the vertical axis and seen by a pinhole camera."""
    faces = to_unit_float(images)
    size = faces.shape[1]

    rows, columns = yaw_source_coordinates(size, degrees)
    warped = np.stack([ndimage.map_coordinates(face, [rows, columns], order=1, mode="nearest") for face in faces])
    return from_unit_float(warped, images)


def low_resolution(images: np.ndarray, size: int) -> np.ndarray:
    """Average blocks down to `size`x`size` pixels, then scale back up with bilinear interpolation."""
    faces = to_unit_float(images)
    count, full_size = faces.shape[0], faces.shape[1]
    if size <= 0 or size >= full_size or full_size % size:
        raise ValueError(f"low_resolution size must divide {full_size} and be smaller, got {size}; use 24, 16 or 12")

    factor = full_size // size
    small = faces.reshape(count, size, factor, size, factor).mean(axis=(2, 4))
    # grid_mode treats pixels as areas, so the upscaled image stays aligned with the original.
    restored = ndimage.zoom(small, (1, factor, factor), order=1, grid_mode=True, mode="nearest")
    return from_unit_float(restored, images)


def darken(faces: np.ndarray, gamma: float | np.ndarray, brightness: float | np.ndarray) -> np.ndarray:
    """Apply `brightness * faces ** gamma`; parameters may be per-image arrays of shape (n, 1, 1)."""
    return brightness * faces**gamma


def add_sensor_noise(
    faces: np.ndarray, read_noise: float | np.ndarray, shot_noise: float | np.ndarray, generator: np.random.Generator
) -> np.ndarray:
    """Add zero-mean Gaussian noise whose variance grows with the signal, like photon (shot) noise."""
    deviation = np.sqrt(read_noise**2 + shot_noise**2 * np.clip(faces, 0.0, 1.0))
    return faces + generator.standard_normal(faces.shape) * deviation


def blend(faces: np.ndarray, alpha: np.ndarray, intensity: float | np.ndarray) -> np.ndarray:
    """Mix each pixel with a flat gray level `intensity` by `alpha` (0 keeps the face, 1 replaces it)."""
    return faces * (1.0 - alpha) + intensity * alpha


def occlusion_masks(
    size: int, center_rows: np.ndarray, heights: np.ndarray, widths: np.ndarray, shape: str
) -> np.ndarray:
    """Build one 0/1 mask per image, shape (n, size, size), over a band or two elliptical lenses.

    Positions are fractions of the image size, one value per image, so the
    training augmentation can draw a different occluder for each face.
    """
    if shape not in OCCLUSION_SHAPES:
        raise ValueError(f"occlusion shape must be one of {OCCLUSION_SHAPES}, got {shape!r}")

    # Pixel centers as fractions of the image, shaped to broadcast against (n, 1, 1).
    grid = (np.arange(size) + 0.5) / size
    rows, columns = grid[None, :, None], grid[None, None, :]
    center_rows, heights, widths = (np.asarray(values, dtype=np.float64)[:, None, None] for values in (center_rows, heights, widths))

    if shape == "band":
        inside = (np.abs(rows - center_rows) <= heights / 2) & (np.abs(columns - 0.5) <= widths / 2)
    else:
        # Two ellipses side by side, each half the width across, touching at the nose bridge.
        lens_radius = widths / 4
        inside = np.zeros((center_rows.shape[0], size, size), dtype=bool)
        for lens_center in (0.5 - lens_radius, 0.5 + lens_radius):
            inside |= ((rows - center_rows) / (heights / 2)) ** 2 + ((columns - lens_center) / lens_radius) ** 2 <= 1.0
    return inside.astype(np.float64)


def affine_warp(
    faces: np.ndarray, angles: np.ndarray, scales: np.ndarray, shifts: np.ndarray, flips: np.ndarray
) -> np.ndarray:
    """Flip, rotate, scale and shift each face about the image center in one bilinear resampling.

    Per image: `angles` in degrees (counterclockwise), `scales` (> 1 zooms in),
    `shifts` as (rows, columns) in pixels, `flips` (mirror left-right).
    """
    size = faces.shape[1]
    center = np.full(2, (size - 1) / 2)
    warped = np.empty_like(faces)

    for index, face in enumerate(faces):
        matrix, offset = _inverse_affine(angles[index], scales[index], shifts[index], bool(flips[index]), center)
        warped[index] = ndimage.affine_transform(face, matrix, offset=offset, order=1, mode="nearest")
    return warped


def yaw_source_coordinates(size: int, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel, the (row, column) it samples in the input under the yaw warp.

    The face is a plane at distance `YAW_CAMERA_DISTANCE` turned by `degrees`
    about its vertical axis. A point at horizontal position x (in half widths)
    appears at x' = x cos(a) / (1 + x sin(a) / d) and its height shrinks by the
    same depth factor; the code inverts that mapping. The turned face is then
    cropped to its new width, as a face detector would crop it, so it fills
    the image from left to right.
    """
    # NOTE: a face is not flat, so this approximates yaw: the nose does not hide
    # the far cheek as it would on a real turned head.
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    half = size / 2
    coordinates = (np.arange(size) + 0.5 - half) / half
    output_rows, output_columns = np.meshgrid(coordinates, coordinates, indexing="ij")

    # Where the left and right edges of the face land, then stretch that span to [-1, 1].
    left, right = (edge * cos / (1 + edge * sin / YAW_CAMERA_DISTANCE) for edge in (-1.0, 1.0))
    projected = left + (output_columns + 1) / 2 * (right - left)

    source_x = projected / (cos - projected * sin / YAW_CAMERA_DISTANCE)
    depth = 1.0 + source_x * sin / YAW_CAMERA_DISTANCE
    source_y = output_rows * depth
    return source_y * half + half - 0.5, source_x * half + half - 0.5


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """Return the batch as float64 in [0, 1] with shape (n, height, width)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected a batch of square grayscale images, shape (n, 48, 48, 1) or (n, 48, 48), got {images.shape}")

    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"expected uint8 (0-255) or float (0-1) images, got dtype {images.dtype}")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(
            f"float images must lie in [0, 1], got values {images.min():.3g} to {images.max():.3g}; divide 0-255 images by 255"
        )
    return images.astype(np.float64)


def from_unit_float(faces: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and cast back to the dtype, scale and shape of `like`."""
    clipped = np.clip(faces, 0.0, 1.0)
    if like.dtype == np.uint8:
        converted = np.rint(clipped * 255.0).astype(np.uint8)
    else:
        converted = clipped.astype(like.dtype)
    return converted.reshape(like.shape)


def _inverse_affine(
    angle: float, scale: float, shift: np.ndarray, flip: bool, center: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # ndimage.affine_transform maps each output pixel to its input position,
    # so the forward transform (flip, then rotate and scale about the center,
    # then shift) is inverted here. Coordinates are (row, column), rows downward:
    # a counterclockwise turn on screen is the matrix [[cos, -sin], [sin, cos]].
    radians = np.deg2rad(angle)
    cos, sin = np.cos(radians), np.sin(radians)
    forward = scale * np.array([[cos, -sin], [sin, cos]])
    if flip:
        forward = forward @ np.diag([1.0, -1.0])

    inverse = np.linalg.inv(forward)
    offset = center - inverse @ (center + np.asarray(shift, dtype=np.float64))
    return inverse, offset

