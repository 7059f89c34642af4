"""`reports/validation.html`: the validation findings on one self-contained page.

Data Docs load their CSS and scripts from CDNs. This page has no external asset
(images are inlined as data URIs), so it opens offline and as an MLflow artifact.
It shows the rules, the warnings, the data-quality counts and a few example
images of each finding: blank images, a duplicate pair, a leak across splits and
a group with conflicting labels.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fer_pipeline.files import atomic_path
from fer_pipeline.labels import EMOTIONS, SPLITS
from fer_pipeline.raw_data import FIRST_DATA_LINE
from fer_pipeline.report import png_data_uri

# Example images are drawn at 2x so a 48x48 face is readable.
EXAMPLE_SCALE = 2

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.number { text-align: right; }
.pass { color: #1a7f37; } .fail { color: #cf222e; } .warn { color: #9a6700; }
figure { display: inline-block; margin: 0 0.8em 0.8em 0; text-align: center; font-size: 0.85em; }
img { image-rendering: pixelated; border: 1px solid #ccc; }
.group { border-left: 3px solid #ccc; padding-left: 0.8em; margin-bottom: 1em; }
"""


def write_validation_page(path: str | Path, report: Any, data: Any) -> None:
    """Write the page for a `ValidationReport` and the images, labels and splits it checked."""
    sections = [
        _summary(report),
        _rules(report.rules),
        _warnings(report.warnings),
        _quality(report.quality),
        _examples(report.quality, data),
        _class_distribution(report.quality["class_distribution"]["per_split"]),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Validation of {html.escape(report.csv)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    with atomic_path(path) as temporary:
        temporary.write_text(page, encoding="utf-8")


def _summary(report: Any) -> str:
    verdict = '<span class="pass">passed</span>' if report.success else '<span class="fail">failed</span>'
    return (
        f"<h1>Validation of {html.escape(report.csv)}</h1>"
        f"<p>Suite <code>{html.escape(str(report.suite['name']))}</code> version {report.suite['version']}: {verdict}, "
        f"{report.rows:,} rows, {report.rules_checked} rules, {len(report.warnings)} warnings. "
        "Critical rules fail the stage; warnings do not.</p>"
    )


def _rules(rules: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, rule in rules.items():
        if rule["success"]:
            outcome = '<span class="pass">pass</span>'
        else:
            outcome = '<span class="fail">fail</span>' if rule["severity"] == "critical" else '<span class="warn">warning</span>'
        failed = "" if rule["failed_rows"] is None else f"{rule['failed_rows']:,}"
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td><td>{rule['severity']}</td><td>{outcome}</td><td class=\"number\">{failed}</td></tr>")
    return "<h2>Rules</h2><table><tr><th>rule</th><th>severity</th><th>result</th><th>failing rows</th></tr>" + "".join(rows) + "</table>"


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return "<h2>Warnings</h2><p>None.</p>"
    items = "".join(f"<li class=\"warn\">{html.escape(warning)}</li>" for warning in warnings)
    return f"<h2>Warnings</h2><ul>{items}</ul>"


def _quality(quality: dict[str, Any]) -> str:
    blank, duplicates = quality["blank_images"], quality["duplicates"]
    findings = [
        ("blank images (pixel std < 1)", blank["count"], blank["first_lines"]),
        ("groups of identical images", duplicates["groups"], duplicates["first_lines"]),
        ("rows in those groups", duplicates["rows"], []),
        ("groups repeated within a split", duplicates["within_split_groups"], []),
        ("groups spanning splits (leakage)", duplicates["cross_split_groups"], duplicates["first_cross_split_lines"]),
        ("groups with conflicting labels", duplicates["conflicting_label_groups"], duplicates["first_conflicting_lines"]),
    ]
    rows = "".join(
        f"<tr><td>{name}</td><td class=\"number\">{count:,}</td><td>{', '.join(map(str, lines))}</td></tr>"
        for name, count, lines in findings
    )
    return "<h2>Data quality</h2><table><tr><th>finding</th><th>count</th><th>first lines</th></tr>" + rows + "</table>"


def _examples(quality: dict[str, Any], data: Any) -> str:
    examples = quality["duplicates"]["example_groups"]
    parts = ["<h2>Examples</h2>"]
    parts.append(_group_block("Blank images", quality["blank_images"]["first_lines"], data))
    for title, key in (
        ("Duplicates within a split", "within_split"),
        ("Duplicates across splits (leakage)", "cross_split"),
        ("Duplicates with conflicting labels", "conflicting_labels"),
    ):
        for lines in examples[key]:
            parts.append(_group_block(title, lines, data))
    return "\n".join(parts)


def _group_block(title: str, lines: list[int], data: Any) -> str:
    if not lines:
        return f"<p>{title}: none.</p>"
    figures = "".join(_figure(line, data) for line in lines[:6])
    more = f"<p>… and {len(lines) - 6} more rows</p>" if len(lines) > 6 else ""
    return f"<div class=\"group\"><h3>{title}</h3>{figures}{more}</div>"


def _figure(line: int, data: Any) -> str:
    row = line - FIRST_DATA_LINE
    caption = f"line {line}<br>{data.splits[row]}, {EMOTIONS[int(data.labels[row])]}"
    return f"<figure><img alt=\"line {line}\" src=\"{image_data_uri(data.images[row])}\"><figcaption>{caption}</figcaption></figure>"


def _class_distribution(per_split: dict[str, dict[str, int]]) -> str:
    header = "".join(f"<th>{emotion}</th>" for emotion in EMOTIONS)
    rows = "".join(
        f"<tr><td>{split}</td>" + "".join(f"<td class=\"number\">{per_split[split][emotion]:,}</td>" for emotion in EMOTIONS) + "</tr>"
        for split in SPLITS
    )
    return f"<h2>Rows per class and split</h2><table><tr><th>split</th>{header}</tr>{rows}</table>"


def image_data_uri(image: np.ndarray, scale: int = EXAMPLE_SCALE) -> str:
    """Encode one grayscale uint8 image as an inline PNG data URI."""
    pixels = np.asarray(image, dtype=np.uint8).reshape(image.shape[0], image.shape[1])
    picture = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return png_data_uri(buffer.getvalue())
