"""Random training augmentation, drawn fresh each epoch, for the train split only.

`AugmentedBatches` feeds `model.fit` with batches of the train split in which
a share (`augment.probability`) of the faces gets its own random brightness,
contrast, gamma, sensor noise, flip, rotation, shift, zoom and, sometimes, a
band or lenses over the eyes. The other faces stay unchanged.
It reuses the primitives of `corruptions`, so training meets the same kinds of
change that the robustness evaluation measures, with random instead of fixed
strengths. Validation and test images are never augmented: `train` hands val
to `fit` as plain arrays and the model itself contains no augmentation layer.
The `augment` section of params.yaml sets the ranges.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from fer_pipeline import corruptions
from fer_pipeline.params import AugmentParams

# Center row and height of the eye band, as fractions of the image, on
# FER-2013's roughly aligned faces: the mean face is darkest around row 17 of
# 48. The augmentation jitters both values.
EYE_ROW = 0.375
EYE_BAND_HEIGHT = 0.18


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled train batches of (images, one-hot labels) with per-image random augmentation.

    Batch `index` of epoch `epoch` depends only on (seed, epoch, index), so a
    run is repeatable however Keras orders its calls.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, augment: AugmentParams, seed: int):
        super().__init__()
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.order = self._shuffled_order()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        generator = np.random.default_rng([self.seed, self.epoch, index])
        return augment_batch(self.images[rows], self.augment, generator), self.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._shuffled_order()

    def _shuffled_order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))


def augment_batch(images: np.ndarray, augment: AugmentParams, generator: np.random.Generator) -> np.ndarray:
    """Augment a share `augment.probability` of float images in [0, 1], shape (n, 48, 48, 1); keep the rest.

    Returns a new array of the same shape and dtype. The untouched faces keep
    training anchored to sharp, unchanged images like those of val and test,
    since every resampled face is slightly blurred by the interpolation.
    """
    faces = corruptions.to_unit_float(images)

    chosen = generator.random(len(faces)) < augment.probability
    if chosen.any():
        faces[chosen] = _augment_faces(faces[chosen], augment, generator)
    return corruptions.from_unit_float(faces, images)


def _augment_faces(faces: np.ndarray, augment: AugmentParams, generator: np.random.Generator) -> np.ndarray:
    faces = _random_geometry(faces, augment, generator)
    faces = _random_photometry(faces, augment, generator)
    faces = _random_occlusion(faces, augment, generator)
    return corruptions.add_sensor_noise(
        faces, _per_image(generator, augment.read_noise, len(faces)), _per_image(generator, augment.shot_noise, len(faces)), generator
    )


def _random_geometry(faces: np.ndarray, augment: AugmentParams, generator: np.random.Generator) -> np.ndarray:
    count, size = faces.shape[0], faces.shape[1]
    angles = generator.uniform(-augment.rotation_degrees, augment.rotation_degrees, count)
    scales = generator.uniform(1.0 - augment.zoom, 1.0 + augment.zoom, count)
    shifts = generator.uniform(-augment.shift, augment.shift, (count, 2)) * size
    flips = generator.random(count) < (0.5 if augment.flip else 0.0)
    return corruptions.affine_warp(faces, angles, scales, shifts, flips)


def _random_photometry(faces: np.ndarray, augment: AugmentParams, generator: np.random.Generator) -> np.ndarray:
    count = faces.shape[0]
    gamma = _log_uniform(generator, augment.gamma, count)
    brightness = generator.uniform(*augment.brightness, count)
    contrast = generator.uniform(*augment.contrast, count)[:, None, None]

    # A share of the faces gets the strong darkening of the low-light
    # conditions. The rest stay close to the clean images of val and test.
    dark = generator.random(count) < augment.low_light_probability
    gamma = np.where(dark, _log_uniform(generator, augment.low_light_gamma, count), gamma)[:, None, None]
    brightness = np.where(dark, generator.uniform(*augment.low_light_brightness, count), brightness)[:, None, None]

    darkened = corruptions.darken(faces, gamma, brightness)
    mean = darkened.mean(axis=(1, 2), keepdims=True)
    return np.clip(mean + (darkened - mean) * contrast, 0.0, 1.0)


def _random_occlusion(faces: np.ndarray, augment: AugmentParams, generator: np.random.Generator) -> np.ndarray:
    count, size = faces.shape[0], faces.shape[1]
    occluded = generator.random(count) < augment.occlusion_probability
    if not occluded.any():
        return faces

    center_rows = EYE_ROW + generator.uniform(-0.06, 0.06, count)
    heights = EYE_BAND_HEIGHT * generator.uniform(0.7, 1.3, count)
    widths = generator.uniform(0.6, 0.95, count)
    lenses = generator.random(count) < 0.5
    masks = np.where(
        lenses[:, None, None],
        corruptions.occlusion_masks(size, center_rows, heights, widths, "lenses"),
        corruptions.occlusion_masks(size, center_rows, heights, widths, "band"),
    )

    opacity = generator.uniform(0.5, 1.0, count) * occluded
    intensity = generator.uniform(0.0, 0.4, count)[:, None, None]
    return corruptions.blend(faces, masks * opacity[:, None, None], intensity)


def _log_uniform(generator: np.random.Generator, bounds: tuple[float, ...], count: int) -> np.ndarray:
    """Draw gamma values on a log scale, so that brightening (< 1) and darkening (> 1) are equally likely around 1."""
    return np.exp(generator.uniform(np.log(bounds[0]), np.log(bounds[1]), count))


def _per_image(generator: np.random.Generator, maximum: float, count: int) -> np.ndarray:
    """Draw one value in [0, maximum] per image, shaped to broadcast over (n, 48, 48)."""
    return generator.uniform(0.0, maximum, count)[:, None, None]
