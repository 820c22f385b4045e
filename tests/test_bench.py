import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import run_cli
from famelog.bench.baselines import GlobalTfidf, GroupedTfidf, SplitData, TemplateMajority
from famelog.bench.config import BenchConfigError, load_config
from famelog.bench.metrics import detection_metrics, per_domain
from famelog.bench.validate import check_results
from famelog.domains.partition import Domain, Partition
from famelog.io import chronological_split, read_records
from famelog.templates import FrozenMatcher
from famelog.trainset import prepare_training


def test_unseen_recall_counts_lines_and_distinct_templates():
    truth = [True, True, True, False, True, False]
    predicted = [True, False, False, True, True, False]
    unseen = [True, True, True, True, False, False]
    templates = ["N1", "N1", "N2", "N3", "T1", "T2"]
    m = detection_metrics(truth, predicted, unseen, templates)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 2, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(0.5)
    assert m["unseen_anomalies"] == 3 and m["unseen_recall_lines"] == pytest.approx(1 / 3)
    assert m["unseen_templates"] == 2 and m["unseen_recall_templates"] == pytest.approx(0.5)  # N1 caught, N2 missed
    assert m["unseen_false_alarms"] == 1
    assert detection_metrics([False], [False], [False], ["T1"])["unseen_recall_lines"] is None
    rows = per_domain(truth, predicted, ["a", "a", "b", "b", "a", "b"], unseen)
    assert {r["domain"]: (r["tp"], r["fp"], r["fn"], r["tn"]) for r in rows} == {"a": (2, 0, 1, 0),
                                                                                   "b": (0, 1, 1, 1)}


@pytest.fixture(scope="module")
def split_data(synth_log):
    train, test = chronological_split(list(read_records(synth_log, "bgl")), 0.8)
    data = prepare_training(train, k=10)
    matcher = FrozenMatcher(data.template_set)
    return SplitData(train, data.template_set, data.template_ids, data.labels, test,
                     [matcher.match(r.content) for r in test])


def test_template_majority_decides_unseen_lines_by_its_setting(split_data):
    unseen = np.array([m.unseen for m in split_data.test_matches])
    assert unseen.any() and not unseen.all()
    normal = TemplateMajority(False).fit(split_data).predict(split_data)
    anomaly = TemplateMajority(True).fit(split_data).predict(split_data)
    assert not normal[unseen].any() and anomaly[unseen].all()
    assert (normal[~unseen] == anomaly[~unseen]).all()
    # a learned template whose labelled lines are all anomalous is flagged
    majority = TemplateMajority().fit(split_data).majority_
    flagged = {t for t, a in majority.items() if a}
    assert flagged and all(normal[i] for i, m in enumerate(split_data.test_matches) if m.template_id in flagged)


def test_text_baselines_predict_one_flag_per_test_line_and_route_unseen_lines(split_data):
    template_ids = sorted({t.id for t in split_data.template_set.templates})
    partition = Partition([Domain("first", "", template_ids[::2]), Domain("second", "", template_ids[1::2])])
    for baseline in (GlobalTfidf(), GroupedTfidf(partition)):
        predicted = baseline.fit(split_data).predict(split_data)
        assert predicted.dtype == bool and len(predicted) == len(split_data.test)
        truth = np.array([r.is_anomaly for r in split_data.test])
        seen = ~np.array([m.unseen for m in split_data.test_matches])
        assert (predicted[seen] == truth[seen]).mean() > 0.9  # learned wording is easy
    assert set(GroupedTfidf(partition).fit(split_data).classifiers_) == {"first", "second"}


def test_well_formed_results_pass_and_broken_numbers_are_named():
    entry = {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "tp": 1, "fp": 0, "fn": 1, "tn": 8, "unseen_anomalies": 0,
             "unseen_templates": 0, "unseen_false_alarms": 0, "unseen_recall_lines": None,
             "unseen_recall_templates": None, "fit_seconds": 1.0, "detect_lines_per_s": 10.0}
    good = {"runs": [{"run": {"dataset": "d", "split": 0.8, "k": 10, "seed": 0}, "data": {"test_lines": 10},
                      "methods": {"famelog": entry}, "peak_rss_mb": 100.0}], "summary": [{}]}
    assert check_results(good) == []
    bad = json.loads(json.dumps(good))
    bad["runs"][0]["methods"]["famelog"].update(f1=float("nan"), tn=7)
    bad["runs"][0]["methods"]["baseline"] = {"error": "ValueError: boom"}
    problems = check_results(bad)
    assert any("f1" in p for p in problems) and any("add up" in p for p in problems)
    assert any("baseline failed" in p for p in problems)


def test_config_problems_are_refused_with_what_is_wrong(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"datasets": [{"name": "x", "path": "x.log", "format": "bgl",
                                              "proposals": {"0.8": {"llm": "missing.json"}}}],
                                "splits": [0.8, 1.5], "ks": [10], "seeds": [0], "main": {"split": 0.7, "k": 10}}))
    with pytest.raises(BenchConfigError) as error:
        load_config(path)
    assert "within (0, 1)" in str(error.value) and "main.split" in str(error.value)
    assert "missing.json not found" in str(error.value)
    path.write_text("{not json")
    with pytest.raises(BenchConfigError, match="not valid JSON"):
        load_config(path)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, synth_log):
    """A real `famelog bench` over a 2-cell grid of the synthetic log (tiny BERT): (config, out dir, stderr)."""
    tmp_path = tmp_path_factory.mktemp("bench")
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({
        "datasets": [{"name": "synthetic", "path": synth_log.name, "format": "bgl"}],
        "splits": [0.8], "ks": [10, 25], "seeds": [0], "main": {"split": 0.8, "k": 25},
        "epochs": 1, "encoder": "tiny", "speed_lines": 20000, "minilm_speed_lines": 64}))
    out = tmp_path / "out"
    result = run_cli("bench", "--data", synth_log.parent, "--config", config, "--out", out)
    assert result.returncode == 0, result.stderr
    return config, out


def test_bench_cli_end_to_end_writes_reports_and_reuses_finished_runs(bench_run, synth_log):
    config, out = bench_run
    results = json.loads((out / "results.json").read_text())
    assert check_results(results) == []
    assert len(results["runs"]) == 2
    main = next(r for r in results["runs"] if r["run"]["k"] == 25)
    methods = main["methods"]
    assert {"famelog", "famelog without certification", "template majority (unseen → normal)",
            "template majority (unseen → anomaly)", "TF-IDF + LR (global)", "TF-IDF + LR per domain",
            "MiniLM (global, no routing)"} <= set(methods)
    small = next(r for r in results["runs"] if r["run"]["k"] == 10)
    assert "MiniLM (global, no routing)" not in small["methods"]  # costly baselines only at the main split and K
    assert set(main["speed"]["cold"]["lines_per_s"]) == {"famelog detect", "Drain3 match()"}
    assert main["data"]["labelled_lines"] > small["data"]["labelled_lines"]
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 5 and "famelog per failure domain" in html and "<script" not in html
    markdown = (out / "results.md").read_text()
    assert "K sweep" in markdown and "| famelog |" in markdown
    again = run_cli("bench", "--data", synth_log.parent, "--config", config, "--out", out)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count(b"; reused") == 2


def test_bench_refuses_missing_data_in_one_line(tmp_path):
    result = run_cli("bench", "--data", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert b"missing" in result.stderr and b"Traceback" not in result.stderr


def _colour_share(png) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    return float((saturation > 60).mean())


@pytest.mark.slow
def test_html_report_plots_render_in_headless_chromium(bench_run, tmp_path):
    """Screenshots of the report in headless Chromium: its plots put colour on the page; the same page without its
    inline SVGs has next to none (tables and text are black and grey)."""
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("FAMELOG_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (CI installs Debian's chromium)")
        pytest.skip("chromium not installed")
    _, out = bench_run
    page = (out / "report.html").read_text()
    without_plots = tmp_path / "no-plots.html"
    without_plots.write_text(re.sub(r"<svg.*?</svg>", "", page, flags=re.S))
    shares = []
    for html_file in (out / "report.html", without_plots):
        png = tmp_path / f"{html_file.stem}.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,2600",
                        f"--screenshot={png}", html_file.resolve().as_uri()], capture_output=True, timeout=180)
        assert png.is_file(), f"chromium wrote no screenshot of {html_file.name}"
        shares.append(_colour_share(png))
    with_plots, without = shares
    assert with_plots > 0.01 and without < 0.001, shares


def test_sweeps_grid_runs_the_k_sweep_and_the_split_sweep_main_cells_first(tmp_path):
    path = tmp_path / "bench.json"
    raw = {"datasets": [{"name": "a", "path": "a.log", "format": "raw"}], "splits": [0.6, 0.8], "ks": [10, 100],
           "seeds": [0, 1], "main": {"split": 0.8, "k": 100}, "grid": "sweeps"}
    path.write_text(json.dumps(raw))
    runs = load_config(path).runs()
    assert {(r.split, r.k) for r in runs} == {(0.8, 100), (0.8, 10), (0.6, 100)} and len(runs) == 6
    assert [(r.split, r.k) for r in runs[:2]] == [(0.8, 100)] * 2
    path.write_text(json.dumps({**raw, "other_split_seeds": [0]}))
    assert {(r.split, r.seed) for r in load_config(path).runs()} == {(0.8, 0), (0.8, 1), (0.6, 0)}
    path.write_text(json.dumps({**raw, "grid": "full"}))
    assert len(load_config(path).runs()) == 8
    quick = load_config(path).quick().runs()
    assert {(r.split, r.k, r.seed) for r in quick} == {(0.8, 100, 0), (0.8, 10, 0)}
