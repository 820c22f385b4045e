"""Line-level detection metrics. Anomaly is the positive class; every test line counts once."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np


def detection_metrics(truth: Sequence[bool], predicted: Sequence[bool], unseen: Sequence[bool],
                      template_ids: Sequence[str]) -> dict:
    """Precision, recall, F1 and confusion counts over all lines, plus recall on the anomalies of unseen templates:
    by line, and by distinct template (a new template counts as caught when at least one of its anomalous lines is
    flagged — an operator is pointed at the new failure type)."""
    truth, predicted, unseen = (np.asarray(a, dtype=bool) for a in (truth, predicted, unseen))
    if not len(truth) == len(predicted) == len(unseen) == len(template_ids):
        raise ValueError("truth, predictions, unseen flags and template ids must have one entry per line")
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    fn = int(np.sum(truth & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    new_anomalies = truth & unseen
    caught: dict[str, bool] = defaultdict(bool)
    for i in np.flatnonzero(new_anomalies):
        caught[template_ids[i]] |= bool(predicted[i])
    return {
        "precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
        "tn": int(np.sum(~truth & ~predicted)),
        "unseen_anomalies": int(new_anomalies.sum()),
        "unseen_recall_lines": float(predicted[new_anomalies].mean()) if new_anomalies.any() else None,
        "unseen_templates": len(caught),
        "unseen_recall_templates": sum(caught.values()) / len(caught) if caught else None,
        "unseen_false_alarms": int(np.sum(~truth & predicted & unseen)),
    }


def per_domain(truth: Sequence[bool], predicted: Sequence[bool], domains: Sequence[str],
               unseen: Sequence[bool]) -> list[dict]:
    """Confusion counts per failure domain a line was placed in (its template's domain, or its route if unseen)."""
    rows: dict[str, dict] = {}
    for is_anomaly, flagged, domain, new in zip(truth, predicted, domains, unseen):
        row = rows.setdefault(domain, {"domain": domain, "lines": 0, "unseen_lines": 0, "tp": 0, "fp": 0, "fn": 0,
                                       "tn": 0})
        row["lines"] += 1
        row["unseen_lines"] += int(bool(new))
        row["tp" if is_anomaly and flagged else "fp" if flagged else "fn" if is_anomaly else "tn"] += 1
    return sorted(rows.values(), key=lambda r: (-r["lines"], r["domain"]))
