"""Read FER-format CSV files (`emotion,pixels,Usage`) and parse their pixel strings.

The file on disk is never changed: header spacing and a UTF-8 byte order mark
are normalized in memory only. Every column is read as text so that the
validation suite, not the CSV reader, decides what a valid value is.
"""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fer_pipeline.labels import IMAGE_SIZE, PIXELS_PER_IMAGE

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")
GZIP_MAGIC = b"\x1f\x8b"

# A data row with index i sits on line i + 2 of the file: line 1 is the header.
FIRST_DATA_LINE = 2


class RawDataError(ValueError):
    """The raw CSV cannot be read as a FER-format table."""


def read_raw_csv(path: str | Path) -> pd.DataFrame:
    """Read a FER-format CSV (plain, or gzip when named `.gz`) into string columns."""
    path = Path(path)
    data = _read_bytes(path)

    _check_utf8(data, path)
    frame = _parse_csv(data, path)
    frame.columns = _normalize_header(list(frame.columns), path)

    log.info("read %s: %d rows, columns %s", path, len(frame), list(frame.columns))
    return frame


def line_numbers(indexes: list[int] | np.ndarray) -> list[int]:
    """Map row indexes of a frame from `read_raw_csv` to line numbers of its file."""
    return [int(index) + FIRST_DATA_LINE for index in indexes]


def count_pixel_values(pixels: pd.Series) -> pd.Series:
    """Count space-separated values per pixel string (null stays null)."""
    array = pa.array(pixels, type=pa.string(), from_pandas=True)
    counts = pc.add(pc.count_substring(array, " "), 1)
    return pd.Series(counts.to_pandas(), index=pixels.index, dtype="Int64")


def parse_pixels(pixels: pd.Series) -> np.ndarray:
    """Parse pixel strings into images of shape (n, 48, 48, 1), dtype uint8.

    Raises `RawDataError` naming the first bad lines; run `fer validate` for
    the full report.
    """
    array = pa.array(pixels, type=pa.string(), from_pandas=True)
    if array.null_count:
        nulls = np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))
        raise RawDataError(f"pixels is empty on lines {line_numbers(nulls[:5])}")

    tokens = pc.split_pattern(array, " ")
    lengths = pc.list_value_length(tokens).to_numpy()
    wrong_length = np.flatnonzero(lengths != PIXELS_PER_IMAGE)
    if wrong_length.size:
        _raise_pixel_error(pixels, wrong_length)

    try:
        values = pc.cast(pc.list_flatten(tokens), pa.uint8())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = [i for i in range(len(pixels)) if describe_pixel_problem(pixels.iloc[i])]
        _raise_pixel_error(pixels, np.asarray(bad))

    images = values.to_numpy(zero_copy_only=False)
    return images.reshape(len(pixels), IMAGE_SIZE, IMAGE_SIZE, 1)


def describe_pixel_problem(text: object) -> str | None:
    """Explain what makes one pixel string invalid, or return None when it is valid."""
    if not isinstance(text, str):
        return "pixels is empty"
    if text != text.strip(" "):
        return "pixels has a leading or trailing space"

    tokens = text.split(" ")
    for position, token in enumerate(tokens, start=1):
        if token == "":
            return f"pixels has two spaces in a row before value {position}"
        if not token.isascii() or not token.isdigit():
            return f"value {position} is {token!r}, not an integer"
        if int(token) > 255:
            return f"value {position} is {token}, outside 0-255"
        if len(token) > 1 and token.startswith("0"):
            return f"value {position} is {token!r}, an integer with a leading zero"

    if len(tokens) != PIXELS_PER_IMAGE:
        return f"pixels has {len(tokens):,} values, expected {PIXELS_PER_IMAGE:,} (48x48)"
    return None


def _raise_pixel_error(pixels: pd.Series, bad_indexes: np.ndarray) -> None:
    first = int(bad_indexes[0])
    detail = describe_pixel_problem(pixels.iloc[first])
    raise RawDataError(
        f"{bad_indexes.size} rows have invalid pixels, first on lines "
        f"{line_numbers(bad_indexes[:5])} (line {first + FIRST_DATA_LINE}: {detail}); "
        "run `fer validate` for the full report"
    )


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise RawDataError(
            f"raw CSV not found: {path}; run `fer data use-sample` or `fer data import PATH` first"
        )

    data = path.read_bytes()
    if data.startswith(GZIP_MAGIC):
        if not path.name.endswith(".gz"):
            raise RawDataError(
                f"{path} is gzip-compressed but its name does not end in .gz; "
                f"decompress it (gunzip -c {path} > fer2013.csv) or import it with `fer data import {path}`"
            )
        data = gzip.decompress(data)

    if not data.strip():
        raise RawDataError(f"{path} is empty; expected a header line 'emotion,pixels,Usage' and data rows")
    return data


def _check_utf8(data: bytes, path: Path) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start : error.start + 1]
        raise RawDataError(
            f"{path} line {line}: byte {byte!r} at offset {error.start} is not valid UTF-8; "
            "FER-format CSVs contain ASCII only, so re-export the file as UTF-8 or ASCII"
        ) from None


def _parse_csv(data: bytes, path: Path) -> pd.DataFrame:
    # The pyarrow engine is several times faster than pandas' C engine on the
    # 300 MB FER-2013 file, but its errors carry no line number. On failure the
    # C engine parses again to find the line.
    try:
        frame = pd.read_csv(io.BytesIO(data), engine="pyarrow", dtype=str, keep_default_na=False)
    except (pa.ArrowInvalid, ValueError):
        try:
            frame = pd.read_csv(io.BytesIO(data), engine="c", dtype=str, keep_default_na=False)
        except pd.errors.ParserError as error:
            reason = str(error).removeprefix("Error tokenizing data. C error: ").strip()
            raise RawDataError(
                f"{path}: invalid CSV: {reason}; every row needs exactly 3 fields: emotion,pixels,Usage"
            ) from None

    # Only empty fields are null: text such as "NA" stays a value, and the
    # validation suite rejects it as one.
    for column in frame.columns:
        frame[column] = frame[column].mask(frame[column].str.len() == 0)
    return frame


def _normalize_header(columns: list[str], path: Path) -> list[str]:
    # Kaggle's icml_face_data.csv writes ' Usage' and ' pixels'; a BOM may
    # precede the first name when the file comes from a spreadsheet export.
    normalized = [str(name).lstrip("\ufeff").strip() for name in columns]
    if normalized != columns:
        log.info("normalized header of %s from %s to %s", path, columns, normalized)
    return normalized
