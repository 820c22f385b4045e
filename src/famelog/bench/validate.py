"""Well-formedness of benchmark results (what ``--quick`` asserts in CI): every run finished, every method produced
numbers, and the numbers are what they claim to be. No thresholds on quality."""

from __future__ import annotations

import math

from famelog.bench.runner import FAMELOG

_SHARES = ("precision", "recall", "f1", "unseen_recall_lines", "unseen_recall_templates", "routing_accuracy")
_COUNTS = ("tp", "fp", "fn", "tn", "unseen_anomalies", "unseen_templates", "unseen_false_alarms")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_results(results: dict) -> list[str]:
    """Problems found, as readable strings (empty: well-formed)."""
    problems = []
    if not results.get("runs"):
        return ["no runs"]
    for result in results["runs"]:
        r = result.get("run", {})
        where = f"{r.get('dataset')} split {r.get('split')} K={r.get('k')} seed {r.get('seed')}"
        methods = result.get("methods", {})
        if FAMELOG not in methods:
            problems.append(f"{where}: famelog did not run")
        test_lines = result.get("data", {}).get("test_lines")
        for name, entry in methods.items():
            if "error" in entry:
                problems.append(f"{where}: {name} failed: {entry['error']}")
                continue
            for key in _SHARES:
                value = entry.get(key)
                if value is not None and not (_finite(value) and 0.0 <= value <= 1.0):
                    problems.append(f"{where}: {name} {key} = {value!r} is not within [0, 1]")
            for key in _COUNTS:
                value = entry.get(key)
                if not (isinstance(value, int) and value >= 0):
                    problems.append(f"{where}: {name} {key} = {value!r} is not a count")
            if all(isinstance(entry.get(k), int) for k in ("tp", "fp", "fn", "tn")) and \
                    entry["tp"] + entry["fp"] + entry["fn"] + entry["tn"] != test_lines:
                problems.append(f"{where}: {name} confusion counts do not add up to the {test_lines} test lines")
            for key in ("fit_seconds", "detect_lines_per_s"):
                if not (_finite(entry.get(key)) and entry[key] >= 0):
                    problems.append(f"{where}: {name} {key} = {entry.get(key)!r} is not a non-negative number")
        for workload in ("cold", "warm"):
            for name, value in result.get("speed", {}).get(workload, {}).get("lines_per_s", {}).items():
                if not (_finite(value) and value > 0):
                    problems.append(f"{where}: speed {workload} {name} = {value!r}")
        if not (_finite(result.get("peak_rss_mb")) and result["peak_rss_mb"] > 0):
            problems.append(f"{where}: peak RSS missing")
    if not results.get("summary"):
        problems.append("no summary rows")
    return problems
