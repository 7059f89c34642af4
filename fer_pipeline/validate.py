"""Stage `validate`: check the raw CSV with a great-expectations suite before training.

In: the raw CSV (`paths.raw_csv`) and the versioned suite `fer_pipeline/suites/fer2013.json`.
Out, when no critical rule breaks: `reports/validation.json` (DVC metrics: counts per rule,
warnings, data-quality findings), `reports/validation.html` (a self-contained summary with
example images) and `reports/data_docs/` (great-expectations Data Docs). A broken critical rule
raises `DataValidationError` with one line per rule and leaves no report. Run it with
`fer validate [--csv PATH]`.

Severity: schema and domain rules are critical and fail the stage; split sizes, classes per
split and the data-quality findings of `fer_pipeline.quality` are warnings.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline import raw_data
from fer_pipeline.files import atomic_directory, remove_on_failure, write_json_atomic
from fer_pipeline.labels import EMOTIONS, PIXELS_PER_IMAGE, SPLITS, USAGE_TO_SPLIT
from fer_pipeline.params import Params
from fer_pipeline.reports import DATA_DOCS_DIR, VALIDATION_FILE, VALIDATION_PAGE

log = logging.getLogger(__name__)

SUITE_NAME = "fer2013"
# Bump when a rule changes; the version is stored in the suite file and in validation.json.
SUITE_VERSION = 2
SUITE_FILE = Path(__file__).parent / "suites" / f"{SUITE_NAME}.json"
CHECKPOINT_NAME = "fer2013_raw_csv"
DATA_DOCS_SITE = "fer_reports"

# FER-2013's published split sizes: another size is a warning (a subset or another release).
FER2013_SPLIT_ROWS = {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}

# One value 0-255 written without leading zeros. The pattern contains no counted
# repetition above 1000: pandas 3 sends string columns to pyarrow's RE2, which
# rejects such patterns (nested counts too), so the count of 2,304 values is a
# separate rule on a derived column.
PIXEL_VALUE = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
PIXELS_REGEX = rf"^(?:{PIXEL_VALUE} )*{PIXEL_VALUE}$"

# The columns the per-split rules read.
SPLIT_RULE_COLUMNS = ("emotion", "Usage")

# Derived column checked by the suite: values per pixel string, from
# `raw_data.count_pixel_values`. It is not part of the CSV.
PIXEL_COUNT_COLUMN = "pixel_count"


class DataValidationError(ValueError):
    """The raw CSV broke one or more critical rules of the suite."""

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
    suite: dict[str, Any]
    rows: int
    rules_checked: int
    # Per rule: severity, whether it passed, and its failing rows (None for table rules).
    rules: dict[str, dict[str, Any]]
    warnings: list[str]
    rows_per_split: dict[str, int]
    rows_per_class: dict[str, int]
    # Data-quality findings (blank images, duplicates, leakage, conflicting
    # labels, class distribution): warnings that do not fail the stage.
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidatedData:
    """Images, labels and splits of a validated file, kept for the example images of the HTML page."""

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray


def run_validate(params: Params) -> ValidationReport:
    """Validate the raw CSV (`paths.raw_csv`); write the JSON report, the HTML page and Data Docs."""
    from fer_pipeline.validation_page import write_validation_page

    reports_dir = Path(params.paths.reports_dir)
    outputs = [reports_dir / VALIDATION_FILE, reports_dir / VALIDATION_PAGE, reports_dir / DATA_DOCS_DIR]
    with remove_on_failure(outputs), atomic_directory(reports_dir / DATA_DOCS_DIR) as docs_dir:
        report, data = validate_csv(params.paths.raw_csv, max_rows=params.validate.max_rows_reported, docs_dir=docs_dir, keep_data=True)
        write_validation_page(reports_dir / VALIDATION_PAGE, report, data)
        write_json_atomic(reports_dir / VALIDATION_FILE, asdict(report))

    log.info("wrote %s, %s and %s/index.html", reports_dir / VALIDATION_FILE, reports_dir / VALIDATION_PAGE, reports_dir / DATA_DOCS_DIR)
    return report


def validate_csv(
    path: str | Path, max_rows: int = 5, docs_dir: Path | None = None, keep_data: bool = False, suite_file: str | Path = SUITE_FILE
) -> Any:
    """Validate any FER-format CSV file; raise `DataValidationError` listing each broken critical rule.

    Returns the report, or (report, data) with `keep_data`. With `docs_dir`, the
    checkpoint also builds great-expectations Data Docs there.
    """
    path = Path(path)
    try:
        frame = raw_data.read_raw_csv(path)
    except raw_data.RawDataError as error:
        raise DataValidationError(path, [RuleFailure("file is a readable FER-format CSV", None, detail=str(error))]) from None

    report, data = validate_frame(frame, path, max_rows=max_rows, docs_dir=docs_dir, suite_file=suite_file)
    return (report, data) if keep_data else report


def validate_frame(
    frame: pd.DataFrame, path: str | Path, max_rows: int = 5, docs_dir: Path | None = None, suite_file: str | Path = SUITE_FILE
) -> tuple[ValidationReport, ValidatedData]:
    """Run the suite's checkpoint on a frame from `raw_data.read_raw_csv`, then the data-quality checks."""
    suite = load_suite(suite_file)
    checked = _with_derived_columns(frame)
    results = run_checkpoint(checked, suite, max_rows, docs_dir, result_format="BASIC")

    if _critical_failures(results, frame):
        # BASIC results carry no row indexes (computing them copies the whole
        # frame per rule), so the rare failing file is checked again for them.
        results = run_checkpoint(checked, suite, max_rows, docs_dir=None, result_format="SUMMARY")
        raise DataValidationError(path, _critical_failures(results, frame))

    data = ValidatedData(
        images=raw_data.parse_pixels(frame["pixels"]),
        labels=frame["emotion"].astype(int).to_numpy(),
        splits=frame["Usage"].map(USAGE_TO_SPLIT).to_numpy(),
    )
    quality = _quality_findings(data, max_rows)
    warnings = [_warning_message(result) for result in results if not result.success] + _quality_warnings(quality)
    for warning in warnings:
        log.warning("validation warning: %s", warning)

    report = ValidationReport(
        csv=str(path),
        success=True,
        suite={"name": suite.name, "version": suite.meta.get("version"), "file": Path(suite_file).name},
        rows=len(frame),
        rules_checked=len(results),
        rules=_rule_summary(results),
        warnings=warnings,
        rows_per_split={split: int((data.splits == split).sum()) for split in SPLITS},
        rows_per_class={emotion: int((data.labels == label).sum()) for label, emotion in enumerate(EMOTIONS)},
        quality=quality,
    )
    log.info("validation passed: %d rows, %d rules, %d warnings", report.rows, report.rules_checked, len(warnings))
    return report, data


def build_suite() -> Any:
    """Build the FER-2013 suite in code: the source of `fer_pipeline/suites/fer2013.json`."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    # A suite needs a current data context even when it is only built and saved.
    gx.get_context(mode="ephemeral")
    suite = gx.ExpectationSuite(
        name=SUITE_NAME,
        meta={"version": SUITE_VERSION, "derived_columns": {PIXEL_COUNT_COLUMN: "number of space-separated values in pixels"}},
    )
    critical = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[*raw_data.COLUMNS, PIXEL_COUNT_COLUMN],
            exact_match=True,
            description="columns are exactly emotion, pixels, Usage",
            meta={"rule": "columns"},
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="the file has at least one data row", meta={"rule": "row_count"}),
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} is not empty", meta={"rule": f"{column}_not_null"})
            for column in raw_data.COLUMNS
        ],
        gxe.ExpectColumnValuesToBeInSet(
            column="emotion", value_set=[str(label) for label in range(7)],
            description="emotion is an integer 0-6", meta={"rule": "emotion_domain"},
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="Usage", value_set=list(USAGE_TO_SPLIT),
            description="Usage is one of Training, PublicTest, PrivateTest", meta={"rule": "usage_domain"},
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="pixels", regex=PIXELS_REGEX,
            description="pixels are integers 0-255 separated by single spaces", meta={"rule": "pixels_format"},
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=PIXEL_COUNT_COLUMN, min_value=PIXELS_PER_IMAGE, max_value=PIXELS_PER_IMAGE,
            description=f"pixels has exactly {PIXELS_PER_IMAGE:,} values (48x48)", meta={"rule": "pixels_count"},
        ),
    ]
    warnings = []
    for usage, split in USAGE_TO_SPLIT.items():
        in_split = Column("Usage") == usage
        warnings += [
            gxe.ExpectTableRowCountToEqual(
                value=FER2013_SPLIT_ROWS[usage], row_condition=in_split, severity="warning",
                description=f"split {split} ({usage}) has {FER2013_SPLIT_ROWS[usage]:,} rows as in FER-2013",
                meta={"rule": f"{split}_rows", "split": split},
            ),
            gxe.ExpectColumnDistinctValuesToContainSet(
                column="emotion", value_set=[str(label) for label in range(7)], row_condition=in_split, severity="warning",
                description=f"split {split} ({usage}) has every emotion", meta={"rule": f"{split}_classes", "split": split},
            ),
        ]
    for expectation in critical + warnings:
        suite.add_expectation(expectation)
    return suite


def load_suite(path: str | Path = SUITE_FILE) -> Any:
    """Read the versioned suite file."""
    import great_expectations as gx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expectation suite not found: {path}; regenerate it with `fer validate --write-suite`")
    gx.get_context(mode="ephemeral")
    return gx.ExpectationSuite(**json.loads(path.read_text(encoding="utf-8")))


def write_suite(path: str | Path = SUITE_FILE) -> Path:
    """Write `build_suite()` to the suite file; a test keeps the file and the code in step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite_as_dict(build_suite()), indent=2) + "\n", encoding="utf-8")
    return path


def suite_as_dict(suite: Any) -> dict[str, Any]:
    """Return the suite's JSON form without the ids great-expectations assigns at run time."""
    data = suite.to_json_dict()
    data.pop("id", None)
    for expectation in data["expectations"]:
        expectation.pop("id", None)
    return data


def run_checkpoint(frame: pd.DataFrame, suite: Any, max_rows: int, docs_dir: Path | None, result_format: str = "SUMMARY") -> list[Any]:
    """Run the suite through great-expectations checkpoints; return one result per expectation.

    `result_format` is great-expectations' own: BASIC gives counts and values,
    SUMMARY adds the indexes of the first failing rows.

    Rules with a row condition (one split) run in a second checkpoint on the
    label and split columns only: great-expectations filters by copying every
    column, and copying the 290 MB pixel column once per rule cost 10 s.
    """
    import great_expectations as gx

    _quiet_great_expectations_logs()
    context = gx.get_context(mode="ephemeral")
    _disable_progress_bars(context)
    actions = []
    if docs_dir is not None:
        _use_data_docs_site(context, docs_dir)
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[DATA_DOCS_SITE]))
    source = context.data_sources.add_pandas("fer2013")

    whole_file = [expectation for expectation in suite.expectations if getattr(expectation, "row_condition", None) is None]
    per_split = [expectation for expectation in suite.expectations if getattr(expectation, "row_condition", None) is not None]
    runs = [(CHECKPOINT_NAME, suite.name, whole_file, frame)]
    if per_split and set(SPLIT_RULE_COLUMNS) <= set(frame.columns):
        runs.append((f"{CHECKPOINT_NAME}_splits", f"{suite.name}_splits", per_split, frame[list(SPLIT_RULE_COLUMNS)]))

    results = []
    for checkpoint_name, suite_name, expectations, data in runs:
        part = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=[e.copy() for e in expectations], meta=suite.meta))
        batch_definition = source.add_dataframe_asset(checkpoint_name).add_batch_definition_whole_dataframe("whole_file")
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=checkpoint_name, data=batch_definition, suite=part))
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=checkpoint_name,
                validation_definitions=[definition],
                actions=actions,
                result_format={"result_format": result_format, "partial_unexpected_count": max_rows},
            )
        )
        with _no_batch_fingerprint():
            (suite_result,) = checkpoint.run(batch_parameters={"dataframe": data}).run_results.values()
        results += suite_result.results
    return results


@contextlib.contextmanager
def _no_batch_fingerprint() -> Iterator[None]:
    # NOTE: great-expectations labels every pandas batch under 1 GB with an MD5
    # of pd.util.hash_pandas_object over all of it: 2-4 s on FER-2013's pixel
    # column, for a marker no rule reads. Setting its size threshold to zero
    # for the duration of our run skips that label and nothing else.
    from great_expectations.execution_engine import pandas_execution_engine

    threshold = pandas_execution_engine.HASH_THRESHOLD
    pandas_execution_engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        pandas_execution_engine.HASH_THRESHOLD = threshold


def _with_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    if "pixels" not in frame.columns:
        return frame
    return frame.assign(**{PIXEL_COUNT_COLUMN: raw_data.count_pixel_values(frame["pixels"])})


def _critical_failures(results: list[Any], frame: pd.DataFrame) -> list[RuleFailure]:
    columns = next(result for result in results if _rule(result) == "columns")
    if not columns.success:
        # The column rules cannot run on a table with the wrong columns, and
        # their errors would only repeat this one.
        return [_to_failure(columns, frame)]

    failures = []
    for result in results:
        _raise_on_exception(result)
        if not result.success and _severity(result) == "critical":
            failures.append(_to_failure(result, frame))
    _explain_pixel_failures(failures, frame)
    return failures


def _rule(result: Any) -> str:
    return result.expectation_config.meta.get("rule", result.expectation_config.type)


def _severity(result: Any) -> str:
    severity = result.expectation_config.severity
    return getattr(severity, "value", str(severity))


def _rule_summary(results: list[Any]) -> dict[str, dict[str, Any]]:
    summary = {}
    for result in results:
        unexpected = result.result.get("unexpected_count")
        summary[_rule(result)] = {
            "severity": _severity(result),
            "success": bool(result.success),
            "failed_rows": None if unexpected is None else int(unexpected),
        }
    return summary


def _warning_message(result: Any) -> str:
    config = result.expectation_config
    observed = result.result.get("observed_value")
    split = config.meta.get("split")
    if config.type == "expect_table_row_count_to_equal":
        return f"split {split} has {observed:,} rows, FER-2013 has {config.kwargs['value']:,} (a subset or another release?)"
    if config.type == "expect_column_distinct_values_to_contain_set":
        missing = sorted(str(value) for value in result.result.get("partial_missing_list") or [])
        return f"split {split} has no rows of {', '.join(EMOTIONS[int(label)] for label in missing)}"
    return f"{config.description}: observed {observed}"


def _quality_findings(data: ValidatedData, max_rows: int) -> dict[str, Any]:
    from fer_pipeline.quality import find_quality_issues

    return find_quality_issues(data.images, data.labels, data.splits, max_rows=max_rows)


def _quality_warnings(quality: dict[str, Any]) -> list[str]:
    blank, duplicates = quality["blank_images"], quality["duplicates"]
    warnings = []
    if blank["count"]:
        warnings.append(f"{blank['count']:,} blank images (pixel std < 1), per split {blank['per_split']}, first on lines {blank['first_lines']}")
    if duplicates["groups"]:
        warnings.append(f"{duplicates['groups']:,} groups of identical images cover {duplicates['rows']:,} rows, first on lines {duplicates['first_lines']}")
    if duplicates["cross_split_groups"]:
        warnings.append(
            f"{duplicates['cross_split_groups']:,} duplicate groups span more than one split (leakage), "
            f"first on lines {duplicates['first_cross_split_lines']}"
        )
    if duplicates["conflicting_label_groups"]:
        warnings.append(
            f"{duplicates['conflicting_label_groups']:,} duplicate groups carry conflicting labels, "
            f"first on lines {duplicates['first_conflicting_lines']}"
        )
    return warnings


def _to_failure(expectation_result: Any, frame: pd.DataFrame) -> RuleFailure:
    config = expectation_result.expectation_config
    outcome = expectation_result.result
    rule = config.description or config.type

    if config.type == "expect_table_columns_to_match_set":
        expected = list(raw_data.COLUMNS)
        found = list(frame.columns)
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


def _use_data_docs_site(context: Any, docs_dir: Path) -> None:
    # The ephemeral context comes with a site in a temporary directory; the
    # stage's site writes into the reports directory instead.
    for site in list(context.get_config().data_docs_sites or {}):
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        DATA_DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
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
