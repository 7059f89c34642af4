"""Turn a photo into a FER-2013-style face: decode, detect the largest face, crop, resize to 48x48.

In: the bytes of a PNG or JPEG (colour or grayscale, any size), or their
base64 text as a serving request carries them. Out: a (48, 48) uint8 face and
its box in the photo's pixel coordinates. Faces are found with OpenCV's
bundled Haar cascade for frontal faces.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from typing import NamedTuple

import cv2
import numpy as np

from fer_pipeline.labels import IMAGE_SIZE

# Phone photos are usually a few MB as JPEG; a larger file costs memory and
# decoding time for no gain at 48x48.
MAX_IMAGE_BYTES = 10_000_000
# A small compressed file can declare a huge image, so the size in the file's
# header is checked before decoding.
MAX_IMAGE_PIXELS = 40_000_000

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
# JPEG start-of-frame markers, which carry the image size: C0-CF except DHT
# (C4), JPG (C8) and DAC (CC).
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Detection runs on a copy no larger than this, because the cascade's time
# grows with the pixel count. The crop is taken from the full-size image.
DETECTION_MAX_SIDE = 1024
# A face smaller than the model's 48x48 input would be upscaled and carry less
# detail than the training images, so smaller faces are not searched for. That
# also skips the cascade's costliest scales (measured once: 3.6 times faster on
# a 640x480 photo).
MIN_FACE_SIDE = IMAGE_SIZE
# The cascade's own window: the smallest face it finds in the detection copy.
CASCADE_WINDOW = 24
# On sample faces placed in a larger canvas, the FER-2013 crop is about 1.05
# times the side of the Haar box, so the crop adds 5% of the box on each side.
# NOTE: measured on enlarged FER-2013 faces only; the model's accuracy on
# crops of real photos is not measured.
FACE_MARGIN = 0.05

DATA_URL_PREFIX = re.compile(r"^data:image/[\w.+-]+;base64,")


class FaceBox(NamedTuple):
    """A face's bounding box in pixels of the photo as decoded (after JPEG EXIF rotation): top-left corner, width and height."""

    x: int
    y: int
    width: int
    height: int


class ImageError(ValueError):
    """One photo cannot be turned into a face: invalid base64, not an image, too large, or no face."""


def face_from_base64(text: object) -> tuple[np.ndarray, FaceBox]:
    """Decode a base64 photo and return its largest face as (48, 48) uint8 with its box."""
    return face_from_bytes(decode_base64(text))


def face_from_bytes(data: bytes) -> tuple[np.ndarray, FaceBox]:
    """Decode a PNG or JPEG and return its largest face as (48, 48) uint8 with its box."""
    gray = decode_image(data)
    box = detect_largest_face(gray)
    return crop_face(gray, box), box


def decode_base64(text: object) -> bytes:
    """Decode the base64 text of an image file; a `data:image/...;base64,` prefix is allowed."""
    if not isinstance(text, str) or not text:
        raise ImageError("image is empty; send the base64 text of a PNG or JPEG file")

    # Line breaks are allowed because `base64` on Linux wraps its output at 76 characters.
    text = "".join(DATA_URL_PREFIX.sub("", text, count=1).split())
    # Four base64 characters carry three bytes: reject before decoding a huge payload.
    if len(text) // 4 * 3 > MAX_IMAGE_BYTES:
        raise ImageError(
            f"image is about {len(text) // 4 * 3 / 1e6:.1f} MB, larger than the "
            f"{MAX_IMAGE_BYTES / 1e6:.0f} MB limit; downscale or recompress it"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("image is not valid base64; send the file's bytes encoded with standard base64") from None


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG or JPEG bytes into one grayscale channel (height, width) uint8."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"image is {len(data) / 1e6:.1f} MB, larger than the {MAX_IMAGE_BYTES / 1e6:.0f} MB limit; "
            "downscale or recompress it"
        )
    width, height = image_size(data)
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"image is {width}x{height}, more than {MAX_IMAGE_PIXELS:,} pixels; downscale it")

    # IMREAD_GRAYSCALE converts colour with the usual luma weights and
    # applies the EXIF orientation of JPEG files.
    gray = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ImageError(f"image could not be decoded ({len(data):,} bytes); the PNG or JPEG file is damaged")
    return gray


def image_size(data: bytes) -> tuple[int, int]:
    """Read (width, height) from a PNG or JPEG header without decoding the pixels."""
    size = None
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data.startswith(JPEG_SIGNATURE):
        size = _jpeg_size(data)
    if size is None:
        raise ImageError(f"image could not be decoded ({len(data):,} bytes); send a PNG or JPEG file")
    return size


def detect_largest_face(gray: np.ndarray) -> FaceBox:
    """Find frontal faces with the Haar cascade and return the largest box."""
    scale = min(1.0, DETECTION_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    min_side = max(CASCADE_WINDOW, round(MIN_FACE_SIDE * scale))
    boxes = _thread_cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(boxes) == 0:
        height, width = gray.shape
        raise ImageError(
            f"no face found in the {width}x{height} image; send a photo of one frontal face "
            f"at least {round(min_side / scale)} pixels wide"
        )

    x, y, width, height = max(boxes.tolist(), key=lambda box: box[2] * box[3])
    return FaceBox(round(x / scale), round(y / scale), round(width / scale), round(height / scale))


def crop_face(gray: np.ndarray, box: FaceBox, margin: float = FACE_MARGIN) -> np.ndarray:
    """Crop a square around the box plus `margin` of its side on each side, resized to (48, 48).

    Parts of the square outside the photo are filled by repeating the edge
    pixels, so a face at the border keeps its proportions.
    """
    side = round(max(box.width, box.height) * (1 + 2 * margin))
    left = box.x + box.width // 2 - side // 2
    top = box.y + box.height // 2 - side // 2

    height, width = gray.shape
    inside = gray[max(top, 0) : min(top + side, height), max(left, 0) : min(left + side, width)]
    square = cv2.copyMakeBorder(
        inside,
        max(-top, 0),
        max(top + side - height, 0),
        max(-left, 0),
        max(left + side - width, 0),
        cv2.BORDER_REPLICATE,
    )
    # INTER_AREA averages the source pixels, the usual choice when shrinking.
    interpolation = cv2.INTER_AREA if side >= IMAGE_SIZE else cv2.INTER_CUBIC
    return cv2.resize(square, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments after SOI: each is FF, a marker byte and a
    # 2-byte big-endian length that includes itself.
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1  # fill byte before a marker
            continue
        if marker in JPEG_FRAME_MARKERS:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


# The scoring server runs requests in a thread pool. detectMultiScale changes
# its classifier's state (it is not const in OpenCV's C++ API), so each thread
# loads its own classifier.
_per_thread = threading.local()


def _thread_cascade() -> cv2.CascadeClassifier:
    if not hasattr(_per_thread, "cascade"):
        path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load its Haar cascade {path}; reinstall opencv-python-headless")
        _per_thread.cascade = cascade
    return _per_thread.cascade
