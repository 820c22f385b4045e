"""Throughput side by side in one process: famelog detect vs Drain3 ``match()`` alone vs MiniLM on every line.

All three read the same parsed test records (parsing is not timed). Two workloads: the test lines once from a cold
start (a fresh detection state: its real share of distinct messages), and the test lines repeated to at least
``min_lines`` with warm caches. MiniLM on every line is a classifier forward pass per line, batches of 128, no cache,
timed on the first ``minilm_lines`` lines (its cost per line does not depend on repetition).
"""

from __future__ import annotations

import time
from typing import Sequence

from famelog.io import Record
from famelog.model import FameModel, line_text

BATCH = 4096


def _rate(function, lines) -> float:
    start = time.perf_counter()
    function(lines)
    return len(lines) / max(time.perf_counter() - start, 1e-9)


def side_by_side(model: FameModel, train: Sequence[Record], test: Sequence[Record], min_lines: int,
                 minilm_lines: int, expert=None) -> dict:
    """lines/s per contender and workload; ``expert`` is the MiniLM classifier to run on every line (default: the
    model's novelty expert)."""
    from drain3 import TemplateMiner

    miner = TemplateMiner(config=model.template_set_.config.drain3_miner_config())
    for record in train:
        miner.add_log_message(record.content)
    expert = expert or model.novelty_ or next(iter(model.experts_.values()), None)

    def famelog_detect(lines):
        for start in range(0, len(lines), BATCH):
            model.predict(lines[start:start + BATCH])

    def drain3_match(lines):
        for record in lines:
            miner.match(record.content)

    def minilm_every_line(lines):
        texts = [line_text(r) for r in lines]
        for start in range(0, len(texts), 128):
            expert.predict_proba(texts[start:start + 128])

    test = list(test)
    minilm = _rate(minilm_every_line, test[:minilm_lines]) if expert is not None else None
    model.reset_state()
    cold = {"famelog detect": _rate(famelog_detect, test), "Drain3 match()": _rate(drain3_match, test)}
    copies = max(1, -(-min_lines // len(test)))
    repeated = test * copies
    warm = {"famelog detect": _rate(famelog_detect, repeated), "Drain3 match()": _rate(drain3_match, repeated)}
    model.reset_state()
    return {"cold": {"lines": len(test), "lines_per_s": cold}, "warm": {"lines": len(repeated), "lines_per_s": warm},
            "minilm_every_line": {"lines": min(minilm_lines, len(test)), "lines_per_s": minilm}}
