"""The `fer` command: one subcommand per stage, plus data import and a run summary.

    fer validate [--csv PATH]     fer prepare     fer train     fer evaluate
    fer register                  fer run         fer data import PATH
    fer data use-sample           fer summary     fer predict PATH... [--json]
    fer orchestrate start|stop|status|run   (Prefect: deployment fer/train)
    fer evaluate --csv PATH --name NAME [--model REF]   (any FER-format CSV)

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
        if arguments.command == "validate" and arguments.write_suite:
            return _write_suite()
        if arguments.command == "validate" and arguments.csv:
            # A standalone check of any CSV needs no project around it.
            return _validate_csv(arguments)
        if arguments.command == "orchestrate" and arguments.action in ("stop", "status"):
            # Stopping must work even when params.yaml is mid-edit or broken.
            return arguments.handler(arguments, None)
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
    validate.add_argument(
        "--write-suite", action="store_true",
        help="regenerate fer_pipeline/suites/fer2013.json from the suite's code and exit (for maintainers)",
    )
    validate.set_defaults(handler=_validate)

    for stage in STAGES[1:]:
        command = commands.add_parser(stage, help=f"run the {stage} stage")
        command.set_defaults(handler=_stage, stage=stage)
    _add_evaluate_csv_options(commands.choices["evaluate"])

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

    predict = commands.add_parser(
        "predict",
        help="score photos (PNG, JPEG) or FER-format CSV rows with the registered model; exits 1 if any input fails",
    )
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image file, or CSV (.csv, .csv.gz) with a pixels column")
    predict.add_argument(
        "--model-uri",
        help="MLflow model to load (default: models:/<mlflow.registered_model>@<mlflow.champion_alias> from params.yaml)",
    )
    predict.add_argument("--json", action="store_true", help="print a JSON array with all 7 probabilities and the face box per input")
    predict.set_defaults(handler=_predict)

    orchestrate = commands.add_parser("orchestrate", help="run the pipeline through Prefect: server, runner and deployment fer/train")
    actions = orchestrate.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start a Prefect server and the runner of fer/train in the background (make orchestrator)")
    start.add_argument("--port", type=int, default=4200, help="port of the server on 127.0.0.1 (default: 4200)")
    actions.add_parser("stop", help="stop the server and runner that start launched (make orchestrator-stop)")
    actions.add_parser("status", help="print whether the server and the runner are up, and their addresses")
    run_deployment = actions.add_parser("run", help="start a run of fer/train; exits non-zero when no server or runner can take it")
    run_deployment.add_argument(
        "-p", "--param", dest="parameters", action="append", default=[], metavar="NAME=VALUE",
        help="flow parameter, value read as JSON, e.g. -p epochs=3 -p learning_rate=0.0005 (repeatable)",
    )
    run_deployment.add_argument("--watch", action="store_true", help="follow the run, printing its states and logs, until it ends")
    run_deployment.add_argument("--timeout", type=float, default=7200, help="seconds --watch follows the run at most (default: 7200)")
    orchestrate.set_defaults(handler=_orchestrate)
    return parser


def _validate(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline.validate import run_validate

    report = run_validate(params)
    print(f"{report.csv}: valid, {report.rows:,} rows, {report.rules_checked} rules checked, {len(report.warnings)} warnings")
    print(f"reports: {params.paths.reports_dir}/validation.html, {params.paths.reports_dir}/data_docs/index.html")
    return 0


def _write_suite() -> int:
    from fer_pipeline.validate import write_suite

    print(f"wrote {write_suite()}")
    return 0


def _validate_csv(arguments: argparse.Namespace) -> int:
    from fer_pipeline.validate import validate_csv

    report = validate_csv(arguments.csv, max_rows=arguments.max_rows)
    print(f"{report.csv}: valid, {report.rows:,} rows, {report.rules_checked} rules checked, {len(report.warnings)} warnings")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    return 0


def _add_evaluate_csv_options(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument(
        "--csv", type=Path,
        help="evaluate on this FER-format CSV (every row) instead of running the stage; needs --name",
    )
    evaluate.add_argument(
        "--name",
        help="name of the evaluation: metrics go to the model's MLflow run as NAME/accuracy, NAME/macro_f1, ...",
    )
    evaluate.add_argument(
        "--model",
        help="model to evaluate: a version number or models:/ URI of the registered model "
        "(e.g. models:/fer-emotion-cnn@champion); default: the last trained model in models/",
    )
    evaluate.add_argument("--output", type=Path, help="JSON report path (default: reports/evaluations/NAME.json)")
    evaluate.set_defaults(handler=_evaluate)


def _evaluate(arguments: argparse.Namespace, params) -> int:
    if arguments.csv is None:
        if arguments.name or arguments.model or arguments.output:
            raise ValueError("--name, --model and --output apply only with --csv PATH")
        return _stage(arguments, params)
    if not arguments.name:
        raise ValueError("--csv needs --name NAME, the prefix of the logged metrics, e.g. --name ckplus")

    from fer_pipeline.cross_dataset import evaluate_csv

    report = evaluate_csv(params, arguments.csv, arguments.name, model=arguments.model, output=arguments.output)
    metrics = report["metrics"]
    print(
        f"{report['model']} on {report['csv']} ({metrics['rows']:,} rows): accuracy {metrics['accuracy']:.4f}, "
        f"macro-F1 {metrics['macro_f1']:.4f}; logged as {report['name']}/* to MLflow run {report['run_id']}"
    )
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


def _predict(arguments: argparse.Namespace, params) -> int:
    import mlflow

    from fer_pipeline import tracking
    from fer_pipeline.predict import format_json, format_text, predict_paths

    mlflow.set_tracking_uri(tracking.tracking_uri())
    model_uri = arguments.model_uri or f"models:/{params.mlflow.registered_model}@{params.mlflow.champion_alias}"
    predictions = predict_paths(arguments.paths, model_uri)

    if arguments.json:
        print(format_json(predictions))
    else:
        for prediction in predictions:
            print(format_text(prediction))
    return 1 if any(prediction.error for prediction in predictions) else 0


def _orchestrate(arguments: argparse.Namespace, params) -> int:
    from fer_pipeline import orchestrator
    from fer_pipeline.deployment_runs import OrchestratorUnavailable, parse_parameters, run_deployment

    try:
        if arguments.action == "start":
            _print_orchestrator(orchestrator.start(port=arguments.port))
        elif arguments.action == "stop":
            stopped = orchestrator.stop()
            print(f"stopped the runner (PID {stopped.runner_pid}) and the server (PID {stopped.server_pid})" if stopped else "no orchestrator was running")
        elif arguments.action == "status":
            state = orchestrator.read_state()
            if state is None:
                print("no orchestrator is running; start it with `make orchestrator`")
                return 1
            _print_orchestrator(state)
        else:
            final_state = run_deployment(parse_parameters(arguments.parameters), watch=arguments.watch, timeout=arguments.timeout)
            return 0 if not arguments.watch or final_state == "Completed" else 1
    except (orchestrator.OrchestratorError, OrchestratorUnavailable) as error:
        print(f"fer: {error}", file=sys.stderr)
        return 1
    return 0


def _print_orchestrator(state) -> None:
    from fer_pipeline import orchestrator

    runner = "serves" if orchestrator.runner_alive(state) else "STOPPED, was serving"
    print(f"Prefect UI:   {state.ui_url}  (API {state.api_url}, server PID {state.server_pid})")
    print(f"Runner:       {runner} deployment {orchestrator.DEPLOYMENT} (PID {state.runner_pid})")
    print(f"Logs:         {state.log_dir / 'server.log'}, {state.log_dir / 'runner.log'}")
    print("Train:        fer orchestrate run -p epochs=3 --watch")
    print(f"  or:         export PREFECT_API_URL={state.api_url}; prefect deployment run {orchestrator.DEPLOYMENT} --watch")
    print("Stop:         make orchestrator-stop")


if __name__ == "__main__":
    sys.exit(main())
