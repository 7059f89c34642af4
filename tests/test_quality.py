import numpy as np

from fer_pipeline.quality import find_quality_issues


def make_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 48, 48, 1), dtype=np.uint8)


def test_all_zero_image_is_blank():
    images = make_images(4)
    images[2] = 0
    splits = np.array(["train", "train", "test", "val"])

    findings = find_quality_issues(images, np.array([0, 1, 2, 3]), splits)

    assert findings["blank_images"]["count"] == 1
    assert findings["blank_images"]["per_split"]["test"] == 1
    assert findings["blank_images"]["first_lines"] == [4]


def test_test_row_identical_to_train_row_is_leakage():
    images = make_images(4)
    images[3] = images[0]
    splits = np.array(["train", "train", "val", "test"])

    duplicates = find_quality_issues(images, np.array([3, 4, 5, 3]), splits)["duplicates"]

    assert duplicates["groups"] == 1
    assert duplicates["rows"] == 2
    assert duplicates["cross_split_groups"] == 1
    assert duplicates["conflicting_label_groups"] == 0
    assert duplicates["first_cross_split_lines"] == [2, 5]


def test_duplicate_with_other_label_conflicts():
    images = make_images(5)
    images[4] = images[1]
    splits = np.array(["train"] * 5)

    duplicates = find_quality_issues(images, np.array([0, 3, 3, 3, 6]), splits)["duplicates"]

    assert duplicates["groups"] == 1
    assert duplicates["cross_split_groups"] == 0
    assert duplicates["conflicting_label_groups"] == 1
    assert duplicates["first_conflicting_lines"] == [3, 6]


def test_within_split_duplicates_counted_apart():
    images = make_images(6)
    images[1] = images[0]
    images[5] = images[4]
    splits = np.array(["train", "train", "val", "test", "train", "val"])

    duplicates = find_quality_issues(images, np.zeros(6, dtype=int), splits)["duplicates"]

    assert duplicates["groups"] == 2
    assert duplicates["within_split_groups"] == 1
    assert duplicates["cross_split_groups"] == 1
    assert duplicates["example_groups"]["within_split"] == [[2, 3]]
    assert duplicates["example_groups"]["cross_split"] == [[6, 7]]


def test_clean_data_has_no_findings():
    findings = find_quality_issues(make_images(6), np.arange(6), np.array(["train", "val", "test"] * 2))

    assert findings["blank_images"]["count"] == 0
    assert findings["duplicates"]["groups"] == 0
    assert findings["duplicates"]["rows"] == 0
