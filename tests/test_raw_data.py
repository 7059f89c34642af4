import gzip

import numpy as np
import pytest

from fer_pipeline.raw_data import RawDataError, describe_pixel_problem, parse_pixels, read_raw_csv


def test_read_keeps_values_as_text(write_csv, sample_lines):
    frame = read_raw_csv(write_csv(sample_lines[:4]))

    assert list(frame.columns) == ["emotion", "pixels", "Usage"]
    assert len(frame) == 3
    assert frame["emotion"].iloc[0] == sample_lines[1].split(",")[0]


def test_parse_pixels_shape_and_values(write_csv, sample_lines):
    frame = read_raw_csv(write_csv(sample_lines[:4]))

    images = parse_pixels(frame["pixels"])

    assert images.shape == (3, 48, 48, 1)
    assert images.dtype == np.uint8
    first_row = [int(value) for value in sample_lines[1].split(",")[1].split(" ")]
    assert images[0].ravel().tolist() == first_row


@pytest.mark.parametrize(
    ("header", "line_ending", "prefix"),
    [
        ("emotion,pixels,Usage", "\r\n", b""),
        ("emotion, pixels, Usage", "\n", b""),
        ("emotion,pixels,Usage", "\n", b"\xef\xbb\xbf"),
    ],
    ids=["crlf", "icml-header-spacing", "utf8-bom"],
)
def test_header_variants_normalized(write_csv, sample_lines, header, line_ending, prefix):
    text = line_ending.join([header, *sample_lines[1:3]]) + line_ending
    frame = read_raw_csv(write_csv(prefix + text.encode("ascii")))

    assert list(frame.columns) == ["emotion", "pixels", "Usage"]
    assert frame["Usage"].iloc[0] in {"Training", "PublicTest", "PrivateTest"}
    assert parse_pixels(frame["pixels"]).shape == (2, 48, 48, 1)


def test_gzip_file_named_gz_is_read(write_csv, sample_lines):
    content = gzip.compress(("\n".join(sample_lines[:3]) + "\n").encode("ascii"))

    frame = read_raw_csv(write_csv(content, name="input.csv.gz"))

    assert len(frame) == 2


def test_parse_pixels_names_bad_line(write_csv, sample_lines):
    bad = sample_lines[2].replace(",", ",999 ", 1)
    frame = read_raw_csv(write_csv([sample_lines[0], sample_lines[1], bad]))

    with pytest.raises(RawDataError, match=r"first on lines \[3\]"):
        parse_pixels(frame["pixels"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (" ".join(["1"] * 2303), "2,303 values, expected 2,304"),
        (" ".join(["256"] + ["1"] * 2303), "value 1 is 256, outside 0-255"),
        (" ".join(["1", "12a"] + ["1"] * 2302), "value 2 is '12a', not an integer"),
        ("1  2", "two spaces in a row before value 2"),
        ("1 2 ", "leading or trailing space"),
        (None, "pixels is empty"),
    ],
)
def test_describe_pixel_problem(text, problem):
    assert problem in describe_pixel_problem(text)


def test_describe_pixel_problem_accepts_valid_row():
    assert describe_pixel_problem(" ".join(["0", "255"] * 1152)) is None
