import csv
from collections import Counter

import pytest

from conftest import BGL_SAMPLE, need_data, run_cli
from famelog import labels
from famelog.io import chronological_split, read_records
from famelog.templates import MatcherConfig, TemplateLearner


def test_kshot_never_exceeds_k_and_takes_small_templates_whole():
    ids = ["a"] * 1000 + ["b"] * 7 + ["c"] * 100
    chosen = labels.sample_kshot(ids, k=50, seed=3)
    per_template = Counter(ids[i] for i in chosen)
    assert per_template == {"a": 50, "b": 7, "c": 50}
    assert chosen == sorted(set(chosen))


def test_kshot_is_deterministic_per_seed_and_spread_over_time():
    ids = ["a"] * 10_000
    first = labels.sample_kshot(ids, k=100, seed=1)
    assert first == labels.sample_kshot(ids, k=100, seed=1)
    assert first != labels.sample_kshot(ids, k=100, seed=2)
    # one line from each hundredth of the template's occurrences, not a burst at the start
    assert [i // 100 for i in first] == list(range(100))


def test_kshot_on_real_bgl_training_split():
    records = list(read_records(need_data(BGL_SAMPLE), "bgl"))
    train, _ = chronological_split(records, 0.8)
    learner = TemplateLearner(MatcherConfig()).fit(r.content for r in train)
    chosen = labels.sample_kshot(learner.assignments_, k=100, seed=0)
    assert max(Counter(learner.assignments_[i] for i in chosen).values()) <= 100
    revealed = labels.reveal_labels([r.is_anomaly for r in train], chosen)
    assert set(revealed) == set(chosen)
    effort = labels.AnnotationEffort(len(revealed), len(train))
    assert effort.ratio < 0.2
    indicators = labels.template_indicators(learner.assignments_, [r.content for r in train], revealed)
    assert set(indicators) == set(learner.assignments_)
    kinds = Counter(i.kind for i in indicators.values())
    assert kinds[labels.PURE_NORMAL] and kinds[labels.PURE_ANOMALY]


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_k_is_validated(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        labels.sample_kshot(["a"], k=k)


def test_reveal_leaves_lines_without_a_label_value_unlabelled():
    assert labels.reveal_labels([True, None, False, True], [0, 1, 2]) == {0: "anomaly", 2: "normal"}


def test_indicators_pure_and_mixed_with_examples_of_both_classes():
    ids = ["t1", "t1", "t1", "t2", "t2", "t3"]
    contents = ["fan 1 speed 3000", "fan 2 speed 120", "fan 3 speed 3100", "ok", "ok", "panic"]
    revealed = {0: "normal", 1: "anomaly", 2: "normal", 3: "normal", 4: "normal", 5: "anomaly"}
    result = labels.template_indicators(ids, contents, revealed)
    assert result["t1"].kind == labels.MIXED and (result["t1"].n_normal, result["t1"].n_anomaly) == (2, 1)
    assert "fan 2 speed 120" in result["t1"].examples and "fan 1 speed 3000" in result["t1"].examples
    assert result["t2"].kind == labels.PURE_NORMAL and result["t2"].examples == ("ok",)
    assert result["t3"].kind == labels.PURE_ANOMALY


def _sheet(tmp_path, rows, header=labels.SHEET_COLUMNS):
    path = tmp_path / "sheet.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_sheet_round_trip(tmp_path):
    rows = [labels.SheetRow("x.log", 3, "T1", "a <*>", 'quoted "text", with comma', "anomaly"),
            labels.SheetRow("x.log", 9, "T2", "b", "ünïcode", "normal")]
    path = tmp_path / "s.csv"
    assert labels.write_sheet(rows, path) == 2
    assert labels.read_sheet(path) == rows


def test_sheet_errors_name_every_problem(tmp_path):
    path = _sheet(tmp_path, [
        ["x", "1", "T1", "t", "c", "anomaly"],
        ["x", "1", "T1", "t", "c", "normal"],      # duplicate line
        ["x", "2", "T1", "t", "c", "broken?"],     # unknown value
        ["x", "zero", "T1", "t", "c", "normal"],   # bad line number
        ["x", "4", "T1", "t", "c", ""],            # not labelled
    ])
    with pytest.raises(labels.LabelSheetError) as info:
        labels.read_sheet(path)
    problems = info.value.problems
    assert "row 3: line 1 is labelled twice (also row 2)" in problems
    assert "row 4: unknown label 'broken?'; use normal or anomaly" in problems
    assert "row 5: line 'zero' is not a positive integer" in problems
    assert "1 row(s) have no label yet (rows 6)" in problems


def test_sheet_missing_columns(tmp_path):
    path = _sheet(tmp_path, [["1", "x"]], header=("line", "content"))
    with pytest.raises(labels.LabelSheetError, match="missing column\\(s\\) label"):
        labels.read_sheet(path)


def test_cli_sample_fill_and_check(tmp_path, synth_log):
    sheet = tmp_path / "sheet.csv"
    result = run_cli("labels", "sample", synth_log, "--format", "bgl", "--k", "5", "--out", sheet)
    assert result.returncode == 0, result.stderr
    assert b"annotation effort:" in result.stdout
    with open(sheet, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["label"] == "" for row in rows)
    assert max(Counter(row["template_id"] for row in rows).values()) <= 5
    # An unfilled sheet is refused with a one-line error.
    result = run_cli("labels", "check", sheet)
    assert result.returncode == 2 and b"have no label yet" in result.stderr and b"Traceback" not in result.stderr
    # Fill it from the log's own label column, as a person would.
    truth = {r.line: r.is_anomaly for r in read_records(synth_log, "bgl")}
    for row in rows:
        row["label"] = "anomaly" if truth[int(row["line"])] else "normal"
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=labels.SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result = run_cli("labels", "check", sheet, "--log", synth_log, "--format", "bgl", "--k", "5")
    assert result.returncode == 0, result.stderr
    assert f"{len(rows):,} labelled lines".encode() in result.stdout
    # Drop a row: checking against the log names the missing line.
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=labels.SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows[1:])
    result = run_cli("labels", "check", sheet, "--log", synth_log, "--format", "bgl", "--k", "5")
    assert result.returncode == 2
    assert f"1 sampled line(s) are missing from the sheet (lines {rows[0]['line']})".encode() in result.stderr
