"""`fer validate` on good and bad input: exit code, one line per broken rule, raw file untouched."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from conftest import SAMPLE_CSV
from fer_pipeline import validate as validate_module
from fer_pipeline.cli import main


def replace_field(line: str, column: int, value: str) -> str:
    emotion, pixels, usage = line.split(",")
    fields = [emotion, pixels, usage]
    fields[column] = value
    return ",".join(fields)


def validate(path, capsys) -> tuple[int, str]:
    code = main(["validate", "--csv", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_valid_sample_passes(write_csv, sample_lines, capsys):
    code, output = validate(write_csv(sample_lines[:50]), capsys)

    assert code == 0
    assert "valid, 49 rows" in output


def test_csv_check_needs_no_project(tmp_path, monkeypatch, write_csv, sample_lines, capsys):
    path = write_csv(sample_lines[:10])
    monkeypatch.chdir(tmp_path)

    code, output = validate(path, capsys)

    assert not (tmp_path / "params.yaml").exists()
    assert code == 0
    assert "valid, 9 rows" in output
    assert not (tmp_path / "reports").exists()


def test_shipped_sample_passes(capsys):
    code, output = validate(SAMPLE_CSV, capsys)

    assert code == 0
    assert "valid" in output


def bad_cases(lines: list[str]) -> dict[str, tuple[object, list[str]]]:
    """Each bad input: the file content and the phrases its error must contain."""
    header, first, second = lines[0], lines[1], lines[2]
    pixels = first.split(",")[1].split(" ")
    return {
        "empty file": (b"", ["is empty"]),
        "header only": ([header], ["at least one data row"]),
        "missing column": (["emotion,pixels", *[line.rsplit(",", 1)[0] for line in (first, second)]], ["columns are exactly", "missing ['Usage']"]),
        "2303 pixels": ([header, first, replace_field(second, 1, " ".join(pixels[:-1]))], ["exactly 2,304 values", "1 row(s)", "lines 3", "2,303 values"]),
        "pixel 256": ([header, first, replace_field(second, 1, " ".join(["256", *pixels[1:]]))], ["integers 0-255", "lines 3", "value 1 is 256"]),
        "token 12a": ([header, replace_field(first, 1, " ".join(["12a", *pixels[1:]])), second], ["integers 0-255", "lines 2", "'12a'"]),
        "emotion 7": ([header, first, replace_field(second, 0, "7")], ["emotion is an integer 0-6", "lines 3", "['7']"]),
        "usage Validation": ([header, replace_field(first, 2, "Validation"), second], ["Usage is one of", "lines 2", "['Validation']"]),
        "null emotion": ([header, first, replace_field(second, 0, "")], ["emotion is not empty", "lines 3"]),
        "six fields": ([header, first, second + ",1,2,3"], ["Expected 3 fields in line 3, saw 6"]),
        "trailing line with 6 fields": ([header, first, second, "0,1 2,Training,1,2,3"], ["Expected 3 fields in line 4, saw 6"]),
        "double space": ([header, first, replace_field(second, 1, "  ".join(pixels[:2]) + " " + " ".join(pixels[2:]))], ["single spaces", "lines 3", "two spaces in a row before value 2"]),
        "trailing space": ([header, replace_field(first, 1, " ".join(pixels) + " "), second], ["single spaces", "lines 2", "leading or trailing space"]),
        "tab": ([header, first, replace_field(second, 1, pixels[0] + "\t" + " ".join(pixels[1:]))], ["single spaces", "lines 3", "not an integer"]),
        "2305 pixels": ([header, first, replace_field(second, 1, " ".join([*pixels, "7"]))], ["exactly 2,304 values", "1 row(s)", "lines 3", "2,305 values"]),
        "usage lowercase publictest": ([header, first, replace_field(second, 2, "publictest")], ["Usage is one of", "lines 3", "['publictest']"]),
        "gzip named csv": (gzip.compress(("\n".join([header, first]) + "\n").encode()), ["gzip-compressed", "gunzip"]),
        "non utf-8 byte": ("\n".join([header, first, second.replace("Training", "Tr\xe9ining").replace("PublicTest", "Publ\xe9cTest").replace("PrivateTest", "Priv\xe9teTest")]).encode("latin-1"), ["line 3", "not valid UTF-8"]),
    }


CASES = list(bad_cases(["emotion,pixels,Usage", "0," + " ".join(["1"] * 2304) + ",Training", "1," + " ".join(["2"] * 2304) + ",Training"]))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_rejected(case, write_csv, sample_lines, capsys):
    content, phrases = bad_cases(sample_lines[:3])[case]
    path = write_csv(content)
    before = digest(path)

    code, output = validate(path, capsys)

    assert code != 0
    for phrase in phrases:
        assert phrase in output, f"{phrase!r} missing from:\n{output}"
    assert "Traceback" not in output
    assert digest(path) == before


def test_several_rules_reported_once_each(write_csv, sample_lines, capsys):
    lines = [sample_lines[0]] + [replace_field(line, 0, "9") for line in sample_lines[1:4]]
    lines.append(replace_field(sample_lines[4], 2, "publictest"))

    code, output = validate(write_csv(lines), capsys)

    assert code == 1
    assert "2 rule(s) broken" in output
    assert "emotion is an integer 0-6: 3 row(s) fail, first on lines 2, 3, 4" in output
    assert "Usage is one of Training, PublicTest, PrivateTest: 1 row(s) fail, first on lines 5" in output


def test_pipeline_validate_writes_report(tmp_path, monkeypatch, sample_lines, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "fer2013.csv").write_text("\n".join(sample_lines[:40]) + "\n")
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())

    assert main(["validate"]) == 0

    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert report["success"] is True
    assert report["rows"] == 39
    assert sum(report["rows_per_split"].values()) == 39
    assert report["quality"]["blank_images"]["count"] == 0
    assert set(report["quality"]["class_distribution"]["per_split"]) == {"train", "val", "test"}


def test_pipeline_validate_writes_pages(tmp_path, monkeypatch, sample_lines):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "fer2013.csv").write_text("\n".join(sample_lines) + "\n")
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())

    assert main(["validate"]) == 0

    page = (tmp_path / "reports" / "validation.html").read_text()
    assert "http://" not in page
    assert "https://" not in page
    assert page.count("data:image/png;base64,") >= 3
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert f"line {report['quality']['blank_images']['first_lines'][0]}" in page
    assert (tmp_path / "reports" / "data_docs" / "index.html").is_file()
    assert list((tmp_path / "reports" / "data_docs" / "validations").rglob("*.html"))


def test_failed_validation_leaves_no_reports(tmp_path, monkeypatch, sample_lines):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    (tmp_path / "data" / "raw" / "fer2013.csv").write_text("\n".join(sample_lines[:30]) + "\n")
    assert main(["validate"]) == 0

    (tmp_path / "data" / "raw" / "fer2013.csv").write_text("\n".join([*sample_lines[:30], replace_field(sample_lines[31], 0, "8")]) + "\n")
    assert main(["validate"]) == 1

    assert not list((tmp_path / "reports").iterdir())


def test_split_size_and_class_warnings(write_csv, sample_lines, capsys):
    header, rows = sample_lines[0], sample_lines[1:]
    without_test_disgust = [line for line in rows if not (line.startswith("1,") and line.endswith(",PublicTest"))]

    code, output = validate(write_csv([header, *without_test_disgust]), capsys)

    assert code == 0
    assert "split test has no rows of disgust" in output
    assert "split train has 1,396 rows, FER-2013 has 28,709" in output
    assert "split val has no rows" not in output


def test_quality_warnings_name_lines(write_csv, sample_lines, capsys):
    header, first, second, third = sample_lines[:4]
    zero = replace_field(first, 1, " ".join(["0"] * 2304))
    leaked = replace_field(second, 2, "PublicTest")

    code, output = validate(write_csv([header, zero, second, third, leaked]), capsys)

    assert code == 0
    assert "1 blank images (pixel std < 1)" in output
    assert "first on lines [2]" in output
    assert "1 duplicate groups span more than one split (leakage), first on lines [3, 5]" in output


def test_saved_suite_keeps_regex(tmp_path):
    saved = validate_module.load_suite()
    regexes = [expectation.regex for expectation in saved.expectations if expectation.expectation_type == "expect_column_values_to_match_regex"]

    assert regexes == [validate_module.PIXELS_REGEX]
    assert validate_module.suite_as_dict(saved) == validate_module.suite_as_dict(validate_module.build_suite())

    rewritten = validate_module.write_suite(tmp_path / "suite.json")
    assert rewritten.read_text() == validate_module.SUITE_FILE.read_text()


def test_unrunnable_expectation_is_validator_error(tmp_path, write_csv, sample_lines):
    suite = json.loads(validate_module.SUITE_FILE.read_text())
    for expectation in suite["expectations"]:
        if expectation["type"] == "expect_column_values_to_match_regex":
            # RE2 (pandas 3's pyarrow strings) rejects a counted repetition above 1000.
            expectation["kwargs"]["regex"] = r"^(?:[0-9]+ ){2303}[0-9]+$"
    broken = tmp_path / "broken_suite.json"
    broken.write_text(json.dumps(suite))

    with pytest.raises(validate_module.ValidatorError, match="expect_column_values_to_match_regex on pixels"):
        validate_module.validate_csv(write_csv(sample_lines[:5]), suite_file=broken)


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("input.csv", lambda text: b"\xef\xbb\xbf" + text.encode("ascii")),
        ("input.csv", lambda text: text.replace("\n", "\r\n").encode("ascii")),
        ("input.csv.gz", lambda text: gzip.compress(text.encode("ascii"))),
        ("input.csv", lambda text: text.replace("emotion,pixels,Usage", "emotion, pixels, Usage", 1).encode("ascii")),
    ],
    ids=["utf8-bom", "crlf", "gzip", "icml-header-spacing"],
)
def test_accepted_variants_are_valid(name, encode, write_csv, sample_lines, capsys):
    path = write_csv(encode("\n".join(sample_lines[:20]) + "\n"), name=name)

    code, output = validate(path, capsys)

    assert code == 0, output
    assert "valid, 19 rows" in output
