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

    images = _parse_well_formed(array)
    if images is not None:
        return images.reshape(len(pixels), IMAGE_SIZE, IMAGE_SIZE, 1)

    # Slow path: some string is malformed. Arrow's split and cast find which
    # rows fail, and the error names the first of them.
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


# Rows parsed per step of the fast path: about 30 MB of text, so the
# temporary arrays stay small and in cache.
PARSE_CHUNK_ROWS = 4096


def _parse_well_formed(array: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Parse pixel strings straight from Arrow's text buffers; None if any string is malformed.

    Works on the raw bytes with vectorized numpy: a value ends where a digit is
    not followed by another digit of the same string, and is at most three
    digits long. Several times faster than splitting into string tokens.
    """
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    images = np.empty((len(array), PIXELS_PER_IMAGE), dtype=np.uint8)
    row = 0
    for chunk in chunks:
        parsed = _parse_arrow_strings(chunk)
        if parsed is None:
            return None
        images[row : row + len(chunk)] = parsed
        row += len(chunk)
    return images


def _parse_arrow_strings(array: pa.Array) -> np.ndarray | None:
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offsets_buffer, data_buffer = array.buffers()
    if data_buffer is None:
        return None
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    text = np.frombuffer(data_buffer, dtype=np.uint8)

    images = np.empty((len(array), PIXELS_PER_IMAGE), dtype=np.uint8)
    for start in range(0, len(array), PARSE_CHUNK_ROWS):
        stop = min(start + PARSE_CHUNK_ROWS, len(array))
        values = _parse_chunk(text[offsets[start] : offsets[stop]], offsets[start : stop + 1] - offsets[start])
        if values is None:
            return None
        images[start:stop] = values
    return images


def _parse_chunk(text: np.ndarray, bounds: np.ndarray) -> np.ndarray | None:
    row_starts, row_ends = bounds[:-1], bounds[1:]
    if np.any(row_ends <= row_starts):
        return None

    digit = (text - 48) < 10  # uint8 arithmetic wraps, so only '0'-'9' pass
    if not np.all(digit | (text == 32)) or not digit[row_starts].all() or not digit[row_ends - 1].all():
        return None

    # Whether the byte before (and the one before that) is a digit of the same string.
    before = np.zeros_like(digit)
    before[1:] = digit[:-1]
    before[row_starts] = False
    two_before = np.zeros_like(digit)
    two_before[1:] = before[:-1]
    two_before &= before
    after = np.zeros_like(digit)
    after[:-1] = digit[1:]
    after[row_ends - 1] = False

    ends = np.flatnonzero(digit & ~after)
    values_per_row = np.diff(np.searchsorted(ends, bounds))
    too_long = two_before[ends] & two_before[ends - 1]  # four digits or more
    leading_zero = np.any(digit & ~before & after & (text == 48))
    if np.any(values_per_row != PIXELS_PER_IMAGE) or too_long.any() or leading_zero:
        return None

    value = text[ends].astype(np.int16) - 48
    value += np.where(before[ends], (text[ends - 1].astype(np.int16) - 48) * 10, 0)
    value += np.where(two_before[ends], (text[ends - 2].astype(np.int16) - 48) * 100, 0)
    if value.max(initial=0) > 255:
        return None
    return value.astype(np.uint8).reshape(len(row_starts), PIXELS_PER_IMAGE)


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
