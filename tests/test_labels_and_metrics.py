import numpy as np
import pytest

from fer_pipeline.labels import EMOTIONS, NUM_CLASSES, USAGE_TO_SPLIT
from fer_pipeline.metrics import confusion_matrix, cross_entropy, split_metrics
from fer_pipeline.prepare import class_counts, one_hot


def test_usage_maps_to_splits():
    assert USAGE_TO_SPLIT == {"Training": "train", "PrivateTest": "val", "PublicTest": "test"}


def test_emotion_order_matches_fer2013():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_one_hot_always_has_seven_columns():
    encoded = one_hot(np.array([0, 3, 3]))

    assert encoded.shape == (3, NUM_CLASSES)
    assert encoded.dtype == np.float32
    assert encoded[1].tolist() == [0, 0, 0, 1, 0, 0, 0]


def test_one_hot_rejects_label_seven():
    with pytest.raises(ValueError, match="labels must be in 0-6"):
        one_hot(np.array([1, 7]))


def test_class_counts_include_absent_classes():
    counts = class_counts(np.array([0, 0, 6]))

    assert counts["angry"] == 2
    assert counts["neutral"] == 1
    assert counts["disgust"] == 0
    assert len(counts) == 7


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]))

    assert matrix[0, 0] == 1
    assert matrix[0, 1] == 1
    assert matrix[1, 1] == 1
    assert matrix.sum() == 3


def test_split_metrics_on_known_predictions():
    labels = np.array([0, 0, 1, 1])
    # Predicted classes: 0, 1, 1, 1.
    probabilities = np.full((4, NUM_CLASSES), 0.01)
    probabilities[[0, 1, 2, 3], [0, 1, 1, 1]] = 0.94

    result = split_metrics(labels, probabilities)

    assert result["accuracy"] == pytest.approx(0.75)
    assert result["per_class"]["angry"]["precision"] == pytest.approx(1.0)
    assert result["per_class"]["angry"]["recall"] == pytest.approx(0.5)
    assert result["per_class"]["disgust"]["precision"] == pytest.approx(2 / 3)
    assert result["per_class"]["disgust"]["recall"] == pytest.approx(1.0)
    assert result["per_class"]["disgust"]["f1"] == pytest.approx(0.8)
    # Classes with no support score 0, so macro-F1 averages over all 7.
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 7)
    assert result["confusion_matrix_normalized"][0][:2] == [0.5, 0.5]


def test_cross_entropy_matches_definition():
    probabilities = np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [0.25, 0.75, 0, 0, 0, 0, 0]])

    assert cross_entropy(np.array([0, 1]), probabilities) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
