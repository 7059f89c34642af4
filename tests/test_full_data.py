"""Split sizes and class counts of the full FER-2013 CSV, read by the pipeline's own reader."""

import numpy as np
import pytest

from fer_pipeline.labels import USAGE_TO_SPLIT
from fer_pipeline.quality import find_quality_issues
from fer_pipeline.raw_data import parse_pixels, read_raw_csv
from fer_pipeline.validate import validate_csv

pytestmark = pytest.mark.full_data

# Published class counts of FER-2013 (emotion 0..6) per Usage value.
EXPECTED_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(scope="module")
def frame(full_csv):
    return read_raw_csv(full_csv)


def test_split_sizes(frame):
    sizes = frame["Usage"].map(USAGE_TO_SPLIT).value_counts().to_dict()

    assert sizes == {"train": 28709, "val": 3589, "test": 3589}


@pytest.mark.parametrize("usage", list(EXPECTED_COUNTS))
def test_class_counts_per_split(frame, usage):
    labels = frame.loc[frame["Usage"] == usage, "emotion"].astype(int)

    assert np.bincount(labels, minlength=7).tolist() == EXPECTED_COUNTS[usage]


def test_all_pixels_parse(frame):
    images = parse_pixels(frame["pixels"])

    assert images.shape == (35887, 48, 48, 1)
    assert images.dtype == np.uint8


def test_quality_findings_match_known_figures(frame):
    images = parse_pixels(frame["pixels"])
    splits = frame["Usage"].map(USAGE_TO_SPLIT).to_numpy()

    findings = find_quality_issues(images, frame["emotion"].astype(int).to_numpy(), splits)

    assert findings["blank_images"]["count"] == 12
    assert findings["blank_images"]["per_split"] == {"train": 11, "val": 0, "test": 1}
    assert findings["duplicates"]["groups"] == 1516
    assert findings["duplicates"]["rows"] == 3369
    assert findings["duplicates"]["cross_split_groups"] == 557
    assert findings["duplicates"]["conflicting_label_groups"] == 57


def test_validation_report_on_full_data(full_csv):
    report = validate_csv(full_csv)

    assert report.rows == 35887
    assert all(rule["success"] for rule in report.rules.values())
    assert not any(warning.startswith("split ") for warning in report.warnings)
    assert report.quality["blank_images"]["count"] == 12
    assert report.quality["duplicates"]["groups"] == 1516
    assert report.quality["duplicates"]["rows"] == 3369
    assert report.quality["duplicates"]["cross_split_groups"] == 557
    assert report.quality["duplicates"]["conflicting_label_groups"] == 57
