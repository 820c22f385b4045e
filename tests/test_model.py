import json

import numpy as np
import pytest

from conftest import run_cli
from famelog.domains.certify import Certifier
from famelog.domains.propose import EmbeddingProposer
from famelog.experts import TINY, BertExpert, best_threshold, fit_temperature
from famelog.io import chronological_split, read_records
from famelog.model import FameModel, ModelError
from famelog.trainset import prepare_training


@pytest.fixture(scope="module")
def split(synth_log):
    return chronological_split(list(read_records(synth_log, "bgl")), 0.8)


@pytest.fixture(scope="module")
def fitted(split, tmp_path_factory):
    train, _ = split
    data = prepare_training(train, k=100)
    partition, report = Certifier().certify(EmbeddingProposer().propose(data.profiles()), data.profiles(),
                                            data.labelled_lines())
    assert partition is not None, report.to_markdown()
    model = FameModel(encoder=TINY, epochs=1).fit(train, data.labels, partition)
    directory = tmp_path_factory.mktemp("model") / "m"
    model.save(directory)
    return model, directory


def test_one_prediction_per_line_in_order_and_unseen_lines_are_routed(fitted, split):
    model, _ = fitted
    _, test = split
    predictions = model.predict(test)
    assert [(p.source, p.line) for p in predictions] == [(r.source, r.line) for r in test]
    unseen = [p for p in predictions if p.unseen]
    assert unseen and all(p.decided_by == "novelty" and p.route_confidence is not None for p in unseen)
    assert {p.domain for p in predictions} <= set(model.kinds_)
    assert all(0.0 <= p.score <= 1.0 for p in predictions)
    for p in predictions:
        if p.decided_by == "domain":
            assert p.anomaly == (model.kinds_[p.domain] == "pure-anomaly")
        if p.decided_by == "template":
            assert p.anomaly == (model.template_kinds_[p.template_id] == "pure-anomaly")
        if p.decided_by == "expert":
            assert model.template_kinds_.get(p.template_id) not in ("pure-normal", "pure-anomaly")
    assert {"template", "expert", "novelty"} <= {p.decided_by for p in predictions}


def test_save_load_gives_identical_predictions(fitted, split):
    model, directory = fitted
    _, test = split
    loaded = FameModel.load(directory)
    model.reset_state()  # provisional templates of unseen lines depend on what was matched before
    assert loaded.predict(test) == model.predict(test)


def test_tampered_artifact_is_refused(fitted, tmp_path):
    import shutil

    _, directory = fitted
    copy = tmp_path / "m"
    shutil.copytree(directory, copy)
    weights = next(copy.glob("experts/*/model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"experts/\d+/model.safetensors was changed or damaged"):
        FameModel.load(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(version=99), "model format version 99"),
    (lambda m: m.update(format="something"), "not a famelog model"),
    (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "outside the model"),
    (lambda m: m["files"].update({"router/missing.json": "0" * 64}), "router/missing.json is missing"),
    (lambda m: m.pop("params"), "incomplete or inconsistent model"),
])
def test_mismatched_manifest_is_refused(fitted, tmp_path, edit, message):
    import shutil

    _, directory = fitted
    copy = tmp_path / "m"
    shutil.copytree(directory, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=message):
        FameModel.load(copy)


def test_flipping_every_label_token_changes_no_prediction(fitted, split, tmp_path, synth_log):
    model, directory = fitted
    lines = synth_log.read_text().splitlines()[4800:]
    flipped = [("KERNPAN" if line.startswith("- ") else "-") + line[line.index(" "):] for line in lines]
    (tmp_path / "a.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.log").write_text("\n".join(flipped) + "\n")
    fresh = FameModel.load(directory)
    a = fresh.predict(read_records(tmp_path / "a.log", "bgl"))
    b = FameModel.load(directory).predict(read_records(tmp_path / "b.log", "bgl"))
    assert [(p.anomaly, p.score, p.domain, p.template_id) for p in a] == \
           [(p.anomaly, p.score, p.domain, p.template_id) for p in b]


def test_expert_threshold_comes_from_its_calibration_split():
    texts = [f"fan module {i % 6} speed {rpm} rpm" for i, rpm in enumerate(list(range(3000, 3600, 5)) + list(range(10, 600, 10)))]
    labels = [rpm < 1000 for rpm in list(range(3000, 3600, 5)) + list(range(10, 600, 10))]
    expert = BertExpert(encoder=TINY, epochs=2, seed=3).fit(texts, labels)
    calibration = expert.calibration_
    held_out = calibration["calibration_indices"]
    assert calibration["lines"] == len(held_out) == round(0.3 * len(texts))
    probabilities = expert.predict_proba([texts[i] for i in held_out])
    y = np.array([labels[i] for i in held_out])
    assert best_threshold(probabilities, y)[0] == pytest.approx(expert.threshold_)
    logits = expert._logits([texts[i] for i in held_out])
    assert fit_temperature(logits, y) == pytest.approx(expert.temperature_)


def test_recall_operating_point_catches_the_target_share_of_held_out_anomalies():
    from famelog.experts import recall_threshold

    probabilities = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.05])
    labels = np.array([True, True, True, True, False, False, False])
    threshold = recall_threshold(probabilities, labels, 0.75)
    assert 0.6 < threshold <= 0.7  # catches 0.9, 0.8, 0.7: three of four anomalies
    assert np.mean(probabilities[labels] >= recall_threshold(probabilities, labels, 1.0)) == 1.0


def test_expert_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        BertExpert(encoder=TINY).fit(["a", "b"], [True, True])


def test_cli_fit_detect_explain_end_to_end(tmp_path, synth_log):
    model_dir = tmp_path / "model"
    result = run_cli("fit", synth_log, "--format", "bgl", "--train-fraction", "0.8", "--encoder", "tiny",
                     "--epochs", "1", "--out", model_dir)
    assert result.returncode == 0, result.stderr
    assert b"model ->" in result.stdout and (model_dir / "manifest.json").exists()
    out = tmp_path / "rows.jsonl"
    result = run_cli("detect", model_dir, synth_log, "--format", "bgl", "--out", out, "--evaluate")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6000 and [r["line"] for r in rows] == list(range(1, 6001))
    assert {"line", "anomaly", "score", "domain", "template_id", "template", "unseen", "malformed"} <= set(rows[0])
    assert b"precision" in result.stdout and b"unseen-template anomaly recall" in result.stdout
    result = run_cli("explain", model_dir, "link state on port 3 changed to down")
    assert result.returncode == 0, result.stderr
    assert b"route" in result.stdout and b"nearest labelled lines" in result.stdout


def test_detect_adversarial_input_one_row_per_line_in_every_format(fitted, tmp_path):
    import pandas as pd

    _, model_dir = fitted
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\r\n".join([b"", b"garbage", b"\xff\xfe\x00binary", b"- 1 2 3 4 5 6 7 8 " + b"y" * 1_000_000,
                                  b"- 1117838579 2005.06.03 R02 t R02 RAS KERNEL FATAL kernel panic: Oops", b"  "]))
    for suffix in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"rows.{suffix}"
        result = run_cli("detect", model_dir, bad, "--format", "bgl", "--out", out)
        assert result.returncode == 0, result.stderr
        frame = {"jsonl": lambda p: pd.read_json(p, lines=True), "csv": pd.read_csv,
                 "parquet": pd.read_parquet}[suffix](out)
        assert list(frame["line"]) == [1, 2, 3, 4, 5, 6]
        assert list(frame["malformed"]) == [True, True, True, False, False, True]
    result = run_cli("detect", model_dir, "-", "--format", "bgl", stdin=b"one\ntwo\n")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2


def test_detect_refuses_a_missing_model_in_one_line(tmp_path):
    result = run_cli("detect", tmp_path / "nothing", "-", stdin=b"x\n")
    assert result.returncode == 2 and b"not a famelog model" in result.stderr and b"Traceback" not in result.stderr


def test_router_round_trip_keeps_its_decisions(tmp_path):
    from famelog.router import Router

    texts = ["KERNEL INFO disk sda ok", "KERNEL FATAL link down", "APP INFO job started", "APP FATAL job died now",
             "KERNEL INFO cache ok", "MONITOR WARNING fan slow"]
    router = Router().fit(texts, ["a", "b", "c", "c", "a", "d"])
    router.save(tmp_path)
    queries = ["KERNEL FATAL link down again", "job started", "fan", ""]
    domains, confidence = router.predict(queries)
    loaded_domains, loaded_confidence = Router.load(tmp_path).predict(queries)
    assert domains == loaded_domains and np.allclose(confidence, loaded_confidence)
    assert domains[0] == "b" and domains[1] == "c"


def test_calibration_split_prefers_named_groups_then_held_out_groups():
    expert = BertExpert(encoder=TINY)
    y = np.array([False, True, False, True, False, True, False, True])
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    train, calibration, how = expert._calibration_split(y, groups, {"d", "c"})
    assert how == "named groups" and sorted(calibration) == [4, 5, 6, 7] and sorted(train) == [0, 1, 2, 3]
    # named groups holding one class only cannot calibrate: whole groups are drawn at random instead
    y_one_class_late = np.array([False, True, False, True, False, False, False, False])
    train, calibration, how = expert._calibration_split(y_one_class_late, groups, {"d", "c"})
    assert how in ("held-out groups", "stratified by label")
    assert set(y_one_class_late[calibration].tolist()) == {False, True}
    assert set(y_one_class_late[train].tolist()) == {False, True}


def test_novelty_expert_is_calibrated_on_templates_that_appeared_late(fitted):
    model, _ = fitted
    assert model.novelty_.calibration_["split"] in ("named groups", "held-out groups")
    assert model.novelty_holdout == 0.3


def test_detection_never_loads_an_llm(fitted, synth_log):
    import subprocess
    import sys

    _, model_dir = fitted
    code = (
        "import sys\n"
        "sys.modules['llama_cpp'] = None  # importing it would fail\n"
        "from famelog.io import read_records\n"
        "from famelog.model import FameModel\n"
        f"rows = FameModel.load({str(model_dir)!r}).predict(read_records({str(synth_log)!r}, 'bgl'))\n"
        "assert len(rows) == 6000\n"
        "assert not any(name.startswith(('famelog.domains.llm', 'famelog.domains.propose', 'famelog.llm_fetch'))\n"
        "               for name in sys.modules), sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_tiny_cache_changes_no_prediction(fitted, split):
    model, directory = fitted
    _, test = split
    reference = FameModel.load(directory).predict(test)
    small = FameModel.load(directory)
    small.cache_size = 2
    small.reset_state()
    # batches whose cached values get emptied half way must still answer every line
    assert [p for start in range(0, len(test), 100) for p in small.predict(test[start:start + 100])] == reference


def test_expert_memory_fits_the_novelty_expert_once_across_partitions(split):
    train, _ = split
    data = prepare_training(train, k=20)
    proposal = EmbeddingProposer().propose(data.profiles())
    certified, _ = Certifier().certify(proposal, data.profiles(), data.labelled_lines())
    memory: dict = {}
    first = FameModel(encoder=TINY, epochs=1, expert_memory=memory).fit(train, data.labels, certified)
    stored = len(memory)
    second = FameModel(encoder=TINY, epochs=1, expert_memory=memory).fit(train, data.labels, proposal)
    assert first.novelty_ is not None and second.novelty_ is first.novelty_
    assert len(memory) >= stored
    other_seed = FameModel(encoder=TINY, epochs=1, seed=1, expert_memory=memory).fit(train, data.labels, certified)
    assert other_seed.novelty_ is not first.novelty_  # different parameters: fitted anew
