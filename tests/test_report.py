"""`report.html` is one self-contained page with every section, whatever the validation report contains."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fer_pipeline.labels import EMOTIONS
from fer_pipeline.metrics import split_metrics
from fer_pipeline.plots import plot_condition_examples, plot_learning_curves, plot_per_class_scores, plot_robustness
from fer_pipeline.report import ReportInputs, write_report
from fer_pipeline.reports import LEARNING_CURVE_PNG, PER_CLASS_PNG, ROBUSTNESS_EXAMPLES_PNG, ROBUSTNESS_PNG, VALIDATION_FILE


@pytest.fixture
def inputs(tmp_path) -> ReportInputs:
    """Report inputs from random predictions on 70 random faces, with the plots evaluate writes."""
    generator = np.random.default_rng(0)
    labels = np.arange(70) % 7
    probabilities = generator.dirichlet(np.ones(7), size=70)
    probabilities[:35, :] = np.eye(7)[labels[:35]] * 0.9 + 0.1 / 7  # half of them right
    faces = generator.random((70, 48, 48, 1))
    result = split_metrics(labels, probabilities)
    result["robust"] = {"low_light_1": {"accuracy": 0.4, "macro_f1": 0.3, "accuracy_drop": 0.1, "macro_f1_drop": 0.05}}

    reports = tmp_path / "reports"
    plot_learning_curves({"loss": [1.0, 0.8], "accuracy": [0.3, 0.4], "val_loss": [1.1, 1.0], "val_accuracy": [0.3, 0.35]}, reports / LEARNING_CURVE_PNG)
    plot_per_class_scores({"test": result}, reports / PER_CLASS_PNG)
    plot_robustness(result, result["robust"], "test", reports / ROBUSTNESS_PNG)
    plot_condition_examples({"clean": faces[:3], "low_light_1": faces[:3] * 0.3}, reports / ROBUSTNESS_EXAMPLES_PNG)

    return ReportInputs(
        run_id="0123abcd",
        model_uri="models:/m-123",
        preset="robust",
        params={"preset": "robust", "train.epochs": 30, "paths.raw_csv": "https://example.com/not-a-link.csv"},
        results={"test": result},
        faces_split="test",
        faces=faces,
        labels=labels,
        probabilities=probabilities,
        reports_dir=reports,
        robustness_split="test",
    )


def write_validation(reports: Path, payload) -> None:
    (reports / VALIDATION_FILE).write_text(json.dumps(payload))


def test_report_written_with_sections(inputs, tmp_path):
    write_validation(inputs.reports_dir, {"success": True, "rows": 70})

    path = write_report(inputs, tmp_path / "reports" / "report.html")

    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for title in ("Summary", "Learning curves", "Confusion matrices", "Per-class precision and recall", "Robustness",
                  "Correct and wrong predictions per class", "Data validation", "Params"):
        assert f"<h2>{title}</h2>" in page, title
    for emotion in EMOTIONS:
        assert f"<h3>{emotion}</h3>" in page
    assert "low_light_1" in page
    assert "0123abcd" in page


def test_report_has_no_external_url(inputs, tmp_path):
    page = write_report(inputs, tmp_path / "report.html").read_text(encoding="utf-8")

    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", page, flags=re.IGNORECASE)
    assert links, "the report has no images"
    assert all(link.startswith("data:image/png;base64,") for link in links), [link[:40] for link in links if not link.startswith("data:")]
    assert "<link" not in page
    assert "<script" not in page
    assert "@import" not in page


def test_report_inlines_every_plot(inputs, tmp_path):
    page = write_report(inputs, tmp_path / "report.html").read_text(encoding="utf-8")

    # Learning curves, per-class bars, robustness chart and examples; the
    # confusion-matrix PNG was not written in this fixture.
    assert page.count('class="plot"') == 4
    assert "confusion_matrix_test.png was not found" in page
    # Up to 6 correct and 6 wrong faces per class.
    tiles = page.count('<figure class="face')
    assert 7 <= tiles <= 7 * 12


def test_report_renders_unknown_validation_keys(inputs, tmp_path):
    write_validation(inputs.reports_dir, {
        "success": True,
        "quality": {"blank_images": {"count": 2, "first_lines": list(range(2, 40))}},
        "warnings": [{"rule": "<script>alert(1)</script>", "rows": 3}],
        "new_key_from_a_later_version": 1.23456,
    })

    page = write_report(inputs, tmp_path / "report.html").read_text(encoding="utf-8")

    validation = page[page.index("<h2>Data validation</h2>"):page.index("<h2>Params</h2>")]
    assert "blank_images" in validation
    assert "new_key_from_a_later_version" in validation
    assert "1.235" in validation
    assert "(26 more)" in validation
    assert "&lt;script&gt;" in validation
    assert "<script>" not in page


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", '"just text"'])
def test_report_survives_odd_validation_file(inputs, tmp_path, content):
    (inputs.reports_dir / VALIDATION_FILE).write_text(content)

    page = write_report(inputs, tmp_path / "report.html").read_text(encoding="utf-8")

    assert "<h2>Data validation</h2>" in page
    assert "<h2>Params</h2>" in page


def test_report_without_robustness(inputs, tmp_path):
    inputs.results["test"]["robust"] = {}

    page = write_report(inputs, tmp_path / "report.html").read_text(encoding="utf-8")

    assert "No robustness conditions were evaluated" in page


def test_report_renders_rule_results_as_one_table(inputs, tmp_path):
    write_validation(inputs.reports_dir, {
        "rules": {
            "emotion_domain": {"severity": "critical", "success": True, "failed_rows": 0},
            "train_rows": {"severity": "warning", "success": False, "failed_rows": None},
        },
    })

    page = write_report(inputs, tmp_path / "report.html").read_text(encoding="utf-8")

    validation = page[page.index("<h2>Data validation</h2>"):page.index("<h2>Params</h2>")]
    assert "<tr><th></th><th>severity</th><th>success</th><th>failed_rows</th></tr>" in validation
    assert "<tr><th>train_rows</th><td>warning</td><td>False</td><td>None</td></tr>" in validation
