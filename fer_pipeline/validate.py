"""Stage `validate`: check the raw CSV with a great-expectations suite before training.

In: the raw CSV (`paths.raw_csv`). Out: `reports/validation.json` (DVC metrics)
when every rule passes; otherwise `DataValidationError` with one line per
failed rule and no report file. Run it with `fer validate [--csv PATH]`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fer_pipeline import raw_data
from fer_pipeline.files import write_json_atomic
from fer_pipeline.labels import PIXELS_PER_IMAGE, USAGE_TO_SPLIT
from fer_pipeline.params import Params
from fer_pipeline.reports import VALIDATION_FILE

log = logging.getLogger(__name__)

SUITE_NAME = "fer2013_schema"

# One value 0-255 written without leading zeros. The pattern contains no counted
# repetition above 1000: pandas 3 sends string columns to pyarrow's RE2, which
# rejects such patterns, so the count of 2,304 values is a separate rule.
PIXEL_VALUE = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
PIXELS_REGEX = rf"^(?:{PIXEL_VALUE} )*{PIXEL_VALUE}$"

# Derived column checked by the suite: values per pixel string, from
# `raw_data.count_pixel_values`.
PIXEL_COUNT_COLUMN = "pixel_count"


class DataValidationError(ValueError):
    """The raw CSV broke one or more rules of the suite."""

    def __init__(self, path: str | Path, failures: list[RuleFailure]):
        self.failures = failures
        lines = [f"validation of {path} failed: {len(failures)} rule(s) broken"]
        lines += [f"  - {failure.message()}" for failure in failures]
        super().__init__("\n".join(lines))


class ValidatorError(RuntimeError):
    """great-expectations could not evaluate an expectation: a tool fault, not a data fault."""


@dataclass
class RuleFailure:
    """One broken rule; `count` is None for rules on the whole file rather than on rows."""

    rule: str
    count: int | None
    lines: list[int] = field(default_factory=list)
    detail: str = ""

    def message(self) -> str:
        if self.count is None:
            return f"{self.rule}: {self.detail}"
        text = f"{self.rule}: {self.count:,} row(s) fail"
        if self.lines:
            text += f", first on lines {', '.join(map(str, self.lines))}"
        if self.detail:
            text += f" ({self.detail})"
        return text


@dataclass
class ValidationReport:
    csv: str
    success: bool
    rows: int
    rules_checked: int
    rows_per_split: dict[str, int]
    rows_per_class: dict[str, int]
    # Data-quality findings (blank images, duplicates, leakage, conflicting
    # labels, class gaps): warnings that do not fail the stage.
    quality: dict[str, Any] = field(default_factory=dict)


def run_validate(params: Params) -> ValidationReport:
    """Validate the raw CSV (`paths.raw_csv`) and write `reports/validation.json` when it passes."""
    report = validate_csv(params.paths.raw_csv, max_rows=params.validate.max_rows_reported)

    report_path = Path(params.paths.reports_dir) / VALIDATION_FILE
    write_json_atomic(report_path, asdict(report))
    log.info("wrote %s", report_path)
    return report


def validate_csv(path: str | Path, max_rows: int = 5) -> ValidationReport:
    """Validate any FER-format CSV file; raise `DataValidationError` listing each broken rule."""
    path = Path(path)
    try:
        frame = raw_data.read_raw_csv(path)
    except raw_data.RawDataError as error:
        raise DataValidationError(path, [RuleFailure("file is a readable FER-format CSV", None, detail=str(error))]) from None

    return validate_frame(frame, path, max_rows=max_rows)


def validate_frame(frame: pd.DataFrame, path: str | Path, max_rows: int = 5) -> ValidationReport:
    """Run the suite on a frame from `raw_data.read_raw_csv`; raise on any broken rule."""
    import great_expectations as gx

    _quiet_great_expectations_logs()
    context = gx.get_context(mode="ephemeral")
    _disable_progress_bars(context)
    batch = context.data_sources.add_pandas("fer").add_dataframe_asset("raw_csv")
    batch_definition = batch.add_batch_definition_whole_dataframe("whole_file")

    # The column rules need the columns, so the table rules run first.
    table_suite = build_table_suite()
    failures = _run_suite(context, batch_definition, frame, table_suite, max_rows)
    if failures:
        raise DataValidationError(path, failures)

    checked = frame.assign(**{PIXEL_COUNT_COLUMN: raw_data.count_pixel_values(frame["pixels"])})
    column_suite = build_column_suite()
    failures = _run_suite(context, batch_definition, checked, column_suite, max_rows)
    _explain_pixel_failures(failures, frame)
    if failures:
        raise DataValidationError(path, failures)

    report = ValidationReport(
        csv=str(path),
        success=True,
        rows=len(frame),
        rules_checked=len(table_suite.expectations) + len(column_suite.expectations),
        rows_per_split={split: int((frame["Usage"] == usage).sum()) for usage, split in USAGE_TO_SPLIT.items()},
        rows_per_class={str(label): int(count) for label, count in frame["emotion"].value_counts().sort_index().items()},
        quality=_quality_findings(frame, max_rows),
    )
    log.info("validation passed: %d rows, per split %s, per class %s", report.rows, report.rows_per_split, report.rows_per_class)
    return report


def _quality_findings(frame: pd.DataFrame, max_rows: int) -> dict[str, Any]:
    from fer_pipeline.quality import find_quality_issues

    findings = find_quality_issues(
        raw_data.parse_pixels(frame["pixels"]),
        frame["emotion"].astype(int).to_numpy(),
        frame["Usage"].map(USAGE_TO_SPLIT).to_numpy(),
        max_rows=max_rows,
    )

    blank, duplicates = findings["blank_images"], findings["duplicates"]
    if blank["count"]:
        log.warning("data quality: %d blank images (pixel std < 1), per split %s, first on lines %s", blank["count"], blank["per_split"], blank["first_lines"])
    if duplicates["groups"]:
        log.warning(
            "data quality: %d groups of identical images cover %d rows; %d groups span several splits "
            "(leakage, first on lines %s), %d carry conflicting labels (first on lines %s)",
            duplicates["groups"], duplicates["rows"], duplicates["cross_split_groups"], duplicates["first_cross_split_lines"],
            duplicates["conflicting_label_groups"], duplicates["first_conflicting_lines"],
        )
    for split, emotions in findings["class_distribution"]["missing_classes"].items():
        log.warning("data quality: split %s has no rows of %s", split, ", ".join(emotions))
    return findings


def build_table_suite() -> Any:
    """Rules on the table as a whole: the exact column set."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{SUITE_NAME}_table")
    suite.add_expectation(
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(raw_data.COLUMNS),
            exact_match=True,
            description="columns are exactly emotion, pixels, Usage",
        )
    )
    return suite


def build_column_suite() -> Any:
    """Rules on each value: no nulls, label and split domains, pixel format and count."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{SUITE_NAME}_columns")
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="the file has at least one data row"),
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} is not empty")
            for column in raw_data.COLUMNS
        ],
        gxe.ExpectColumnValuesToBeInSet(
            column="emotion",
            value_set=[str(label) for label in range(7)],
            description="emotion is an integer 0-6",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="Usage",
            value_set=list(USAGE_TO_SPLIT),
            description="Usage is one of Training, PublicTest, PrivateTest",
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="pixels",
            regex=PIXELS_REGEX,
            description="pixels are integers 0-255 separated by single spaces",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=PIXEL_COUNT_COLUMN,
            min_value=PIXELS_PER_IMAGE,
            max_value=PIXELS_PER_IMAGE,
            description=f"pixels has exactly {PIXELS_PER_IMAGE:,} values (48x48)",
        ),
    ]
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def _run_suite(context: Any, batch_definition: Any, frame: pd.DataFrame, suite: Any, max_rows: int) -> list[RuleFailure]:
    import great_expectations as gx

    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": max_rows},
    )

    failures = []
    for expectation_result in result.results:
        _raise_on_exception(expectation_result)
        if expectation_result.success:
            continue
        failures.append(_to_failure(expectation_result, frame))
    return failures


def _to_failure(expectation_result: Any, frame: pd.DataFrame) -> RuleFailure:
    config = expectation_result.expectation_config
    outcome = expectation_result.result
    rule = config.description or config.type

    if config.type == "expect_table_columns_to_match_set":
        expected = config.kwargs["column_set"]
        found = outcome.get("observed_value", list(frame.columns))
        missing = [column for column in expected if column not in found]
        extra = [column for column in found if column not in expected]
        return RuleFailure(rule, None, detail=f"missing {missing}, unexpected {extra}, found {found}")

    if config.type == "expect_table_row_count_to_be_between":
        return RuleFailure(rule, None, detail="the file has a header but no data rows")

    indexes = outcome.get("partial_unexpected_index_list") or []
    values = outcome.get("partial_unexpected_list") or []
    detail = ""
    if values and config.kwargs.get("column") != "pixels":
        detail = f"values {sorted({str(value) for value in values})}"
    return RuleFailure(rule, int(outcome.get("unexpected_count", 0)), raw_data.line_numbers(indexes), detail)


def _explain_pixel_failures(failures: list[RuleFailure], frame: pd.DataFrame) -> None:
    # A regex failure does not say which value is wrong: spell it out for the
    # first failing line so the user can fix the row without a regex debugger.
    for failure in failures:
        if failure.rule.startswith("pixels") and failure.lines:
            first_index = failure.lines[0] - raw_data.FIRST_DATA_LINE
            problem = raw_data.describe_pixel_problem(frame["pixels"].iloc[first_index])
            failure.detail = f"line {failure.lines[0]}: {problem}"


def _raise_on_exception(expectation_result: Any) -> None:
    # great-expectations reports an expectation it could not evaluate as a
    # plain failure with no failing rows; treat it as the tool fault it is.
    info = expectation_result.exception_info or {}
    entries = info.values() if info and "raised_exception" not in info else [info]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            config = expectation_result.expectation_config
            raise ValidatorError(
                f"great-expectations could not evaluate {config.type} on "
                f"{config.kwargs.get('column', 'the table')}: {entry.get('exception_message')}"
            )


def _quiet_great_expectations_logs() -> None:
    # Its INFO lines about its own set-up bury the stage's log.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _disable_progress_bars(context: Any) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a `validation.json` written by this stage."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
