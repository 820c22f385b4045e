"""Run the grid: one fresh process per dataset × split × K × seed (so peak RSS is that run's own), every method on
the same split and the same K-shot labels; each finished run is saved as JSON and reused while the code is the same.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np

from famelog import __version__
from famelog.bench.baselines import GlobalMiniLM, GlobalTfidf, GroupedTfidf, SplitData, TemplateMajority
from famelog.bench.config import BenchConfig, Run
from famelog.bench.metrics import detection_metrics, per_domain
from famelog.model import line_text

FAMELOG = "famelog"
NO_CERTIFICATION = "famelog without certification"
MAJORITY_NORMAL = "template majority (unseen → normal)"
MAJORITY_ANOMALY = "template majority (unseen → anomaly)"
TFIDF = "TF-IDF + LR (global)"
GROUPED_TFIDF = "TF-IDF + LR per domain"
GLOBAL_MINILM = "MiniLM (global, no routing)"


def llm_method(label: str) -> str:
    return f"famelog, LLM partition ({label})"


# They print, render, check or choose the runs (a run's own settings are in its stamp), never measure.
_NOT_MEASURING = {"cli.py", "report.py", "validate.py", "config.py", "__main__.py"}


def code_fingerprint() -> str:
    """sha256 over the famelog source a measurement depends on: a saved run is reused only while it is unchanged."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(root.rglob("*.py")):
        if path.name not in _NOT_MEASURING:
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(config: BenchConfig, run: Run, data_dir: str, with_speed: bool) -> dict:
    """Everything measured for one cell of the grid, as plain JSON data."""
    from famelog.domains.certify import Certifier
    from famelog.domains.partition import Partition
    from famelog.domains.propose import EmbeddingProposer
    from famelog.io import chronological_split, read_records
    from famelog.templates import FrozenMatcher
    from famelog.trainset import prepare_training

    started = time.perf_counter()
    records = list(read_records(Path(data_dir) / run.dataset.path, run.dataset.format))
    train, test = chronological_split(records, run.split)
    training = prepare_training(train, k=run.k, seed=run.seed)
    matcher = FrozenMatcher(training.template_set)
    data = SplitData(train, training.template_set, training.template_ids, training.labels, test,
                     [matcher.match(r.content) for r in test])
    truth = [bool(r.is_anomaly) for r in test]
    unseen = [m.unseen for m in data.test_matches]
    template_ids = [m.template_id for m in data.test_matches]
    result = {
        "run": {"dataset": run.dataset.name, "split": run.split, "k": run.k, "seed": run.seed},
        "data": {"lines": len(records), "train_lines": len(train), "test_lines": len(test),
                 "test_anomalies": int(sum(truth)), "templates": len(training.template_set.templates),
                 "unseen_test_lines": int(sum(unseen)), "unseen_test_anomalies": int(np.sum(np.array(truth) & unseen)),
                 "labelled_lines": len(training.labels),
                 "labelled_anomalies": sum(v == "anomaly" for v in training.labels.values()),
                 "annotation_effort": len(training.labels) / len(train)},
        "methods": {}, "partitions": {},
    }
    profiles, lines = training.profiles(), training.labelled_lines()

    proposals: dict[str, Partition] = {}
    clock = time.perf_counter()
    proposals["embedding"] = EmbeddingProposer().propose(profiles)
    propose_seconds = time.perf_counter() - clock
    for label, file in run.dataset.proposals.get(f"{run.split:g}", {}).items():
        proposals[label] = Partition.load(config.base / file)
    partitions: dict[str, Partition | None] = {}
    for label, proposal in proposals.items():
        clock = time.perf_counter()
        partition, report = Certifier(seed=run.seed).certify(proposal, profiles, lines)
        partitions[label] = partition
        result["partitions"][label] = {"proposed": len(proposal.domains), "certified": report.outcome,
                                       "reason": report.reason, "certify_seconds": time.perf_counter() - clock,
                                       "domains": len(partition.domains) if partition else None}
    result["partitions"]["embedding"]["propose_seconds"] = propose_seconds

    memory: dict = {}  # the novelty expert does not depend on the partition: fitted once per run

    def score(name: str, fit: Callable, predict: Callable, extra: Callable | None = None) -> None:
        try:
            clock = time.perf_counter()
            fitted = fit()
            fit_seconds = time.perf_counter() - clock
            clock = time.perf_counter()
            predicted = predict(fitted)
            detect_seconds = time.perf_counter() - clock
            entry = {"fit_seconds": fit_seconds, "detect_lines_per_s": len(test) / max(detect_seconds, 1e-9),
                     **detection_metrics(truth, predicted, unseen, template_ids)}
            if extra:
                entry.update(extra(fitted, predicted))
        except Exception as exc:  # one failing method must not cost the other measurements of the run
            entry = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4)}
        result["methods"][name] = entry

    def fame(partition: Partition):
        from famelog.model import FameModel

        return lambda: FameModel(encoder=config.encoder, epochs=config.epochs, seed=run.seed, expert_memory=memory).fit(
            train, training.labels, partition)

    def fame_predict(model):
        model.reset_state()  # a cold start: no cached routes or scores
        model.predictions_ = model.predict(test)
        return [p.anomaly for p in model.predictions_]

    def fame_details(model, predicted):
        rows = model.predictions_
        seen = [(i, r) for i, r in enumerate(rows) if not r.unseen]
        # Routing accuracy: on test lines of learned templates, the router's domain vs their template's domain.
        texts = {i: line_text(test[i], model.context_fields, matcher.mask(test[i].content)) for i, _ in seen}
        distinct = sorted(set(texts.values()))
        routed = dict(zip(distinct, model.router_.predict(distinct)[0]))
        correct = sum(routed[texts[i]] == r.domain for i, r in seen)
        decided = {}
        for r in rows:
            decided[r.decided_by] = decided.get(r.decided_by, 0) + 1
        return {"routing_accuracy": correct / len(seen) if seen else None, "decided_by": decided,
                "domains": len(model.partition_.domains),
                "mixed_domains": sum(k == "mixed" for k in model.kinds_.values()),
                "per_domain": per_domain(truth, predicted, [r.domain for r in rows], unseen),
                "peak_rss_mb": _peak_rss_mb()}

    def add_domain_seconds(name: str, seconds: float) -> None:
        # A user's fit includes proposing and certifying the domains (an LLM proposal is made once, offline: its
        # time is in the partitions section, not here).
        if "fit_seconds" in result["methods"][name]:
            result["methods"][name]["fit_seconds"] += seconds

    main_model = {}
    if partitions["embedding"] is not None:
        def fit_main():
            main_model["model"] = fame(partitions["embedding"])()
            return main_model["model"]
        score(FAMELOG, fit_main, fame_predict, fame_details)
        add_domain_seconds(FAMELOG, propose_seconds + result["partitions"]["embedding"]["certify_seconds"])
    else:
        result["methods"][FAMELOG] = {"error": f"certification {result['partitions']['embedding']['reason']}"}
    for label in proposals:
        if label != "embedding":
            if partitions[label] is None:
                result["methods"][llm_method(label)] = {"error": result["partitions"][label]["reason"]}
            else:
                score(llm_method(label), fame(partitions[label]), fame_predict, fame_details)
                add_domain_seconds(llm_method(label), result["partitions"][label]["certify_seconds"])
    score(NO_CERTIFICATION, fame(proposals["embedding"]), fame_predict, fame_details)
    add_domain_seconds(NO_CERTIFICATION, propose_seconds)
    score(MAJORITY_NORMAL, lambda: TemplateMajority(False).fit(data), lambda m: m.predict(data))
    score(MAJORITY_ANOMALY, lambda: TemplateMajority(True).fit(data), lambda m: m.predict(data))
    score(TFIDF, lambda: GlobalTfidf().fit(data), lambda m: m.predict(data))
    if partitions["embedding"] is not None:
        score(GROUPED_TFIDF, lambda: GroupedTfidf(partitions["embedding"]).fit(data), lambda m: m.predict(data))
    global_minilm = {}
    if config.costly_everywhere or run.is_main(config):
        def fit_global():
            global_minilm["model"] = GlobalMiniLM(epochs=config.epochs, seed=run.seed, encoder=config.encoder).fit(data)
            return global_minilm["model"]
        score(GLOBAL_MINILM, fit_global, lambda m: m.predict(data))
    if with_speed and "model" in main_model:
        from famelog.bench.speed import side_by_side

        baseline = global_minilm.get("model")
        expert = baseline.expert_ if baseline is not None and baseline.constant_ is None else None
        result["speed"] = side_by_side(main_model["model"], train, test, config.speed_lines,
                                       config.minilm_speed_lines, expert)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["seconds"] = time.perf_counter() - started
    return result


def run_grid(config: BenchConfig, data_dir: str, out_dir: Path, runs: list[Run],
             on_done: Callable[[Run, dict, bool], None] | None = None) -> list[dict]:
    """Run (or reuse) every run in a fresh process, in order. ``on_done(run, result, reused)`` after each."""
    fingerprint = code_fingerprint()
    cache = out_dir / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    speed_done: set[str] = set()
    results = []
    for run in runs:
        # Throughput once per data set, in its first main run.
        with_speed = run.is_main(config) and run.dataset.name not in speed_done
        if with_speed:
            speed_done.add(run.dataset.name)
        path = cache / f"{run.key}.json"
        stamp = {"code": fingerprint, "epochs": config.epochs, "encoder": config.encoder, "with_speed": with_speed,
                 "speed_lines": config.speed_lines, "minilm_speed_lines": config.minilm_speed_lines,
                 "costly": config.costly_everywhere or run.is_main(config),
                 "proposals": run.dataset.proposals, "path": run.dataset.path, "format": run.dataset.format}
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("stamp") == stamp:
                results.append(saved)
                if on_done:
                    on_done(run, saved, True)
                continue
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            result = pool.submit(run_one, config, run, data_dir, with_speed).result()
        result["stamp"] = stamp
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        results.append(result)
        if on_done:
            on_done(run, result, False)
    return results
