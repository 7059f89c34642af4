"""The run report: one self-contained HTML page per run, `reports/report.html`.

`evaluate` writes it after scoring. Its sections follow the order in which a
reader checks a run: summary, learning curves, confusion matrices, per-class
precision and recall, and robustness with example faces per condition. Then
come correct and wrong test predictions per class, the data validation
summary and every param. Every image is inlined as a base64 data URI and the page loads
nothing from elsewhere, so the one file is the whole report, on disk and as
an MLflow artifact.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.files import atomic_path
from fer_pipeline.labels import EMOTIONS
from fer_pipeline.reports import (
    LEARNING_CURVE_PNG,
    PER_CLASS_PNG,
    ROBUSTNESS_EXAMPLES_PNG,
    ROBUSTNESS_PNG,
    VALIDATION_FILE,
    confusion_png,
)

log = logging.getLogger(__name__)

# Faces shown per class in the prediction grid, for correct and for wrong predictions each.
FACES_PER_CLASS = 6
# Maximum list length that the validation summary prints in full; longer lists end with a count.
MAX_LIST_ITEMS = 12

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { max-width: 100%; border: 1px solid #eee; }
.faces { display: flex; flex-wrap: wrap; gap: 0.3rem; margin: 0.2rem 0 0.8rem; }
figure.face { margin: 0; text-align: center; font-size: 0.7rem; width: 84px; }
figure.face img { width: 72px; height: 72px; image-rendering: pixelated; border: 2px solid #ccc; }
figure.correct img { border-color: #2a2; } figure.wrong img { border-color: #c33; }
.note { color: #666; font-size: 0.9rem; }
"""


@dataclass
class ReportInputs:
    """Inputs of the report, gathered by `evaluate`.

    `results` maps split -> `metrics.split_metrics` output (with `robust`
    scores on the robustness split); `faces`, `labels` and `probabilities`
    are the images (float [0, 1], (n, 48, 48, 1)), integer labels and
    predicted probabilities of `faces_split`.
    """

    run_id: str
    model_uri: str
    preset: str
    params: dict[str, Any]
    results: dict[str, dict[str, Any]]
    faces_split: str
    faces: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    reports_dir: Path
    robustness_split: str | None = None
    notes: list[str] = field(default_factory=list)


def write_report(inputs: ReportInputs, path: str | Path) -> Path:
    """Render the report and write it atomically to `path`."""
    sections = [
        _header(inputs),
        _summary_section(inputs),
        _image_section("Learning curves", [inputs.reports_dir / LEARNING_CURVE_PNG], "Loss and accuracy per epoch, train and val."),
        _image_section("Confusion matrices", [inputs.reports_dir / confusion_png(split) for split in inputs.results], "Rows are true classes; the right panel divides each row by its total (recall per class)."),
        _image_section("Per-class precision and recall", [inputs.reports_dir / PER_CLASS_PNG], ""),
        _robustness_section(inputs),
        _predictions_section(inputs),
        _validation_section(inputs.reports_dir / VALIDATION_FILE),
        _params_section(inputs.params),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>FER run report {html.escape(inputs.run_id)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )

    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(page, encoding="utf-8")
    log.info("wrote %s (%d KiB)", path, len(page.encode("utf-8")) // 1024)
    return path


def png_data_uri(data: bytes) -> str:
    """Return PNG bytes as a `data:` URI for an `<img src>`."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def face_png(face: np.ndarray) -> bytes:
    """Encode one face, float [0, 1] of shape (48, 48, 1) or (48, 48), as a grayscale PNG."""
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.squeeze(face), cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buffer.getvalue()


def _header(inputs: ReportInputs) -> str:
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [("preset", inputs.preset), ("MLflow run", inputs.run_id), ("model", inputs.model_uri), ("generated", generated)]
    notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in inputs.notes)
    return f"<h1>Facial emotion recognition: run report</h1>\n{_table(['', ''], rows, header=False)}{notes}"


def _summary_section(inputs: ReportInputs) -> str:
    rows = [
        (split, f"{result['rows']:,}", f"{result['accuracy']:.4f}", f"{result['macro_f1']:.4f}", f"{result['loss']:.4f}")
        for split, result in inputs.results.items()
    ]
    return "<h2>Summary</h2>\n" + _table(["split", "rows", "accuracy", "macro-F1", "loss"], rows)


def _image_section(title: str, paths: list[Path], caption: str) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if caption:
        parts.append(f'<p class="note">{html.escape(caption)}</p>')
    for path in paths:
        parts.append(_image_file(path))
    return "\n".join(parts)


def _image_file(path: Path) -> str:
    if not path.is_file():
        return f'<p class="note">{html.escape(path.name)} was not found; run the stage that writes it.</p>'
    return f'<img class="plot" alt="{html.escape(path.stem)}" src="{png_data_uri(path.read_bytes())}">'


def _robustness_section(inputs: ReportInputs) -> str:
    split = inputs.robustness_split
    conditions = inputs.results.get(split, {}).get("robust") if split else None
    if not conditions:
        return '<h2>Robustness</h2>\n<p class="note">No robustness conditions were evaluated (robustness section of params.yaml).</p>'

    clean = inputs.results[split]
    rows = [("clean", f"{clean['accuracy']:.4f}", "", f"{clean['macro_f1']:.4f}", "")]
    rows += [
        (name, f"{scores['accuracy']:.4f}", f"{-scores['accuracy_drop']:+.4f}", f"{scores['macro_f1']:.4f}", f"{-scores['macro_f1_drop']:+.4f}")
        for name, scores in conditions.items()
    ]
    return "\n".join([
        "<h2>Robustness</h2>",
        f'<p class="note">The {html.escape(split)} split under each condition of params.yaml (fixed seeds); '
        "change is the difference from the clean split.</p>",
        _table(["condition", "accuracy", "change", "macro-F1", "change"], rows),
        _image_file(inputs.reports_dir / ROBUSTNESS_PNG),
        "<h3>The same faces under each condition</h3>",
        _image_file(inputs.reports_dir / ROBUSTNESS_EXAMPLES_PNG),
    ])


def _predictions_section(inputs: ReportInputs) -> str:
    predicted = inputs.probabilities.argmax(axis=1)
    confidence = inputs.probabilities.max(axis=1)
    parts = [
        "<h2>Correct and wrong predictions per class</h2>",
        f'<p class="note">{html.escape(inputs.faces_split)} split, the first {FACES_PER_CLASS} of each kind per true class; '
        "a caption shows the predicted class and its probability. Green: correct, red: wrong.</p>",
    ]
    for label, emotion in enumerate(EMOTIONS):
        of_class = inputs.labels == label
        parts.append(f"<h3>{html.escape(emotion)}</h3>")
        for kind, selected in (("correct", of_class & (predicted == label)), ("wrong", of_class & (predicted != label))):
            rows = np.flatnonzero(selected)[:FACES_PER_CLASS]
            if rows.size == 0:
                parts.append(f'<p class="note">no {kind} predictions</p>')
                continue
            tiles = [_face_tile(inputs.faces[row], EMOTIONS[predicted[row]], float(confidence[row]), kind) for row in rows]
            parts.append(f'<div class="faces">{"".join(tiles)}</div>')
    return "\n".join(parts)


def _face_tile(face: np.ndarray, predicted: str, confidence: float, kind: str) -> str:
    caption = f"{predicted} {confidence:.2f}"
    return (
        f'<figure class="face {kind}"><img alt="{kind}: predicted {html.escape(caption)}" src="{png_data_uri(face_png(face))}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _validation_section(path: Path) -> str:
    title = "<h2>Data validation</h2>"
    if not path.is_file():
        return f'{title}\n<p class="note">{html.escape(str(path))} was not found; run `fer validate`.</p>'
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f'{title}\n<p class="note">{html.escape(str(path))} could not be read: {html.escape(str(error))}</p>'
    # The validation report grows over time: render whatever keys it has.
    return f'{title}\n<p class="note">From {html.escape(path.name)}, written by the validate stage.</p>\n{_render_value(summary)}'


def _render_value(value: Any) -> str:
    if isinstance(value, dict):
        if not value:
            return "(none)"
        if _is_record_table(value):
            return _render_records(value)
        rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{_render_value(item)}</td></tr>" for key, item in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if not value:
            return "(none)"
        # Short values (line numbers, class names) read best on one line, sentences as a list.
        if all(not isinstance(item, (dict, list)) and len(str(item)) <= 40 for item in value):
            shown = ", ".join(html.escape(str(item)) for item in value[:MAX_LIST_ITEMS])
            more = f" … ({len(value) - MAX_LIST_ITEMS} more)" if len(value) > MAX_LIST_ITEMS else ""
            return shown + more
        items = "".join(f"<li>{_render_value(item)}</li>" for item in value[:MAX_LIST_ITEMS])
        more = f"<li>… {len(value) - MAX_LIST_ITEMS} more</li>" if len(value) > MAX_LIST_ITEMS else ""
        return f"<ul>{items}{more}</ul>"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _is_record_table(value: dict[str, Any]) -> bool:
    """Return whether `value` maps names to records with the same scalar fields, such as one result per rule."""
    records = list(value.values())
    if len(records) < 2 or not all(isinstance(record, dict) and record for record in records):
        return False
    fields = list(records[0])
    return all(list(record) == fields and not any(isinstance(item, (dict, list)) for item in record.values()) for record in records)


def _render_records(value: dict[str, dict[str, Any]]) -> str:
    fields = list(next(iter(value.values())))
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(str(field))}</th>" for field in fields) + "</tr>"
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th>" + "".join(f"<td>{_render_value(record[field])}</td>" for field in fields) + "</tr>"
        for key, record in value.items()
    )
    return f"<table>{head}{rows}</table>"


def _params_section(params: dict[str, Any]) -> str:
    rows = [(key, json.dumps(value)) for key, value in params.items()]
    return f"<h2>Params</h2>\n<details><summary>{len(rows)} params after the preset was applied</summary>\n{_table(['param', 'value'], rows)}</details>"


def _table(headers: list[str], rows: list[tuple], header: bool = True) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in headers) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(_cell(value, first=index == 0) for index, value in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table>{head}{body}</table>\n"


def _cell(value: Any, first: bool) -> str:
    text = html.escape(str(value))
    if first:
        return f"<th>{text}</th>"
    numeric = text.replace(".", "", 1).replace(",", "").lstrip("+-").isdigit()
    return f'<td class="number">{text}</td>' if numeric else f"<td>{text}</td>"
