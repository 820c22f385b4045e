"""famelog detect vs Drain3 ``match()`` alone vs MiniLM on every line, measured side by side in one run.

    .venv/bin/python benchmarks/detect_speed.py MODEL_DIR [--data ../shared/data] [--min-lines 1000000]

MODEL_DIR is a model fitted on the first 80% of BGL_sample_69k (see BENCHMARKS.md). Workloads: the 69,604-line
sample once from a cold start (a freshly loaded model: its real share of distinct messages), then the sample
replicated to >= 1M lines with warm caches. All three read the same parsed records (parsing is not timed). MiniLM on
every line is a MiniLM classifier forward pass per line, in batches of 128, timed on the first 4,096 lines (its cost
per line does not depend on repetition: it has no cache). Peak RSS of the whole run is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from famelog.io import chronological_split, read_records
from famelog.model import FameModel


def rate(function, lines) -> float:
    start = time.perf_counter()
    function(lines)
    return len(lines) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", default=os.environ.get("FAMELOG_DATA", "../shared/data"))
    parser.add_argument("--min-lines", type=int, default=1_000_000)
    parser.add_argument("--minilm-lines", type=int, default=4096)
    args = parser.parse_args()

    records = list(read_records(Path(args.data) / "BGL" / "BGL_sample_69k.log.gz", "bgl"))
    train, _ = chronological_split(records, 0.8)
    model = FameModel.load(args.model)
    config = model.template_set_.config
    drain3_config = TemplateMinerConfig()
    drain3_config.drain_sim_th, drain3_config.drain_depth = config.sim_th, config.depth
    drain3_config.masking_instructions = list(config.new_masker().masking_instructions)
    miner = TemplateMiner(config=drain3_config)
    for record in train:
        miner.add_log_message(record.content)

    expert = next(iter(model.experts_.values()), model.novelty_)

    def famelog_detect(lines):
        for start in range(0, len(lines), 4096):
            model.predict(lines[start:start + 4096])

    def drain3_match(lines):
        for record in lines:
            miner.match(record.content)

    def minilm_every_line(lines):
        texts = [f"{r.fields.get('Component', '')} {r.fields.get('Level', '')} {r.content}" for r in lines]
        for start in range(0, len(texts), 128):
            expert.predict_proba(texts[start:start + 128])

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    minilm = rate(minilm_every_line, records[: args.minilm_lines])
    model.reset_state()
    cold = {"famelog detect": rate(famelog_detect, records), "Drain3 match()": rate(drain3_match, records)}
    copies = -(-args.min_lines // len(records))
    replicated = records * copies
    warm = {"famelog detect": rate(famelog_detect, replicated), "Drain3 match()": rate(drain3_match, replicated)}
    for title, rates in ((f"{len(records):,} lines once, cold start", cold),
                         (f"{len(replicated):,} lines (x{copies}), warm caches", warm)):
        print(title)
        for name, value in [*rates.items(), ("MiniLM on every line", minilm)]:
            print(f"  {name:<22} {value:>12,.0f} lines/s   famelog = {rates['famelog detect'] / value:8.2f} x this")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
