"""The `fer` command: one subcommand per stage, plus data import and a run summary.

    fer validate [--csv PATH]     fer prepare     fer train     fer evaluate
    fer register                  fer run         fer data import PATH
    fer data use-sample           fer summary

Every command reads `params.yaml` from the working directory; `--set
section.key=value` overrides a param for this invocation only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fer_pipeline.params import load_params
from fer_pipeline.pipeline import STAGES, run_pipeline, run_stage

log = logging.getLogger("fer_pipeline")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the command, and turn known failures into one-line errors."""
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, arguments.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # great-expectations logs its own import and set-up at INFO.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    from fer_pipeline.raw_data import RawDataError
    from fer_pipeline.validate import DataValidationError

    try:
        if arguments.command == "validate" and arguments.csv:
            # A standalone check of any CSV needs no project around it.
            return _validate_csv(arguments)
        params = load_params(arguments.params, arguments.overrides)
        return arguments.handler(arguments, params)
    except DataValidationError as error:
        print(f"fer: {error}", file=sys.stderr)
        return 1
    except (RawDataError, ValueError, FileNotFoundError) as error:
        print(f"fer: error: {error}", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer", description="FER-2013 pipeline stages and data commands.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one param for this run, e.g. --set train.epochs=1 (repeatable)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check the raw CSV with the great-expectations suite")
    validate.add_argument(
        "--csv", type=Path,
        help="validate this FER-format CSV instead of paths.raw_csv; needs no params.yaml and writes no report",
    )
    validate.add_argument("--max-rows", type=int, default=5, help="line numbers listed per broken rule with --csv (default: 5)")
    validate.set_defaults(handler=_validate)

    for stage in STAGES[1:]:
        command = commands.add_parser(stage, help=f"run the {stage} stage")
        command.set_defaults(handler=_stage, stage=stage)

    run = commands.add_parser("run", help="run every stage in order without DVC (the MLproject main entry point)")
    run.set_defaults(handler=_run)

    data = commands.add_parser("data", help="manage the raw CSV under DVC")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    data_import = data_commands.add_parser("import", help="copy a FER-2013 CSV (or .csv.gz) to paths.raw_csv and `dvc add` it")
    data_import.add_argument("source", type=Path)
    data_import.set_defaults(handler=_data_import)
    use_sample = data_commands.add_parser("use-sample", help="make the shipped sample the raw CSV again")
    use_sample.set_defaults(handler=_data_use_sample)
    sample = data_commands.add_parser("sample", help="draw the shipped sample from the full FER-2013 CSV")
    sample.add_argument("source", type=Path)
    sample.set_defaults(handler=_data_sample)

    summary = commands.add_parser("summary", help="print where the metrics, MLflow run and registered model are")
    summary.set_defaults(handler=_summary)
    return parser


def _validate(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline.validate import run_validate

    report = run_validate(params)
    print(f"{report.csv}: valid, {report.rows:,} rows, {report.rules_checked} rules checked")
    return 0


def _validate_csv(arguments: argparse.Namespace) -> int:
    from fer_pipeline.validate import validate_csv

    report = validate_csv(arguments.csv, max_rows=arguments.max_rows)
    print(f"{report.csv}: valid, {report.rows:,} rows, {report.rules_checked} rules checked")
    return 0


def _stage(arguments: argparse.Namespace, params) -> int:
    run_stage(arguments.stage, params)
    return 0


def _run(arguments: argparse.Namespace, params) -> int:
    run_pipeline(params)
    return _summary(arguments, params)


def _data_import(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline.dataset import import_csv

    target = import_csv(arguments.source, params)
    print(f"{target} now contains {arguments.source}; `dvc repro` trains on it. Commit {target}.dvc to keep this version.")
    return 0


def _data_use_sample(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline.dataset import SAMPLE_CSV, import_csv

    target = import_csv(SAMPLE_CSV, params)
    print(f"{target} now contains the shipped sample ({SAMPLE_CSV}); `dvc repro` trains on it.")
    return 0


def _data_sample(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline.dataset import SAMPLE_CSV, write_sample

    sample = write_sample(arguments.source, SAMPLE_CSV)
    print(f"wrote {len(sample):,} rows to {SAMPLE_CSV}")
    return 0


def _summary(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline import tracking

    from fer_pipeline.reports import METRICS_FILE, REGISTRY_FILE

    reports_dir = Path(params.paths.reports_dir)
    metrics_path = reports_dir / METRICS_FILE
    registry_path = reports_dir / REGISTRY_FILE
    run_path = Path(params.paths.model_dir) / tracking.RUN_FILE
    if not metrics_path.is_file() or not run_path.is_file():
        raise FileNotFoundError(f"no finished run found ({metrics_path}, {run_path}); run `make run` or `dvc repro` first")

    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    run_record = json.loads(run_path.read_text(encoding="utf-8"))
    print("\nResults")
    for split, values in metrics.items():
        print(f"  {split:<5} accuracy {values['accuracy']:.4f}  macro-F1 {values['macro_f1']:.4f}  loss {values['loss']:.4f}")
    print(f"  metrics:     {metrics_path} (and reports/*.png, `dvc metrics show`, `dvc plots show`)")
    print(f"  MLflow run:  {run_record['run_id']} in {run_record['tracking_uri']}")
    if registry_path.is_file():
        registry = json.loads(registry_path.read_text(encoding="utf-8"))
        print(
            f"  registered:  {registry['registered_model']} version {registry['version']}; "
            f"@{registry['alias']} is version {registry['champion_version']} ({registry['model_uri']})"
        )
    print(f"\nOpen the MLflow UI:  mlflow ui --backend-store-uri {run_record['tracking_uri']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
