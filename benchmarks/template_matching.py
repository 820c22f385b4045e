"""Frozen template matching vs Drain3's own ``match()``, measured side by side in one run.

Learns templates on the first 80% of the BGL sample, then matches the sample once (cold caches; its real share of
distinct messages) and replicated to >= 500k lines, with
(1) famelog's FrozenMatcher (caches keyed by content and masked content), (2) the same matcher with its cache disabled and
(3) Drain3 ``TemplateMiner.match()`` trained on the same lines with the same masking. Timings on a shared machine are
noisy: compare the ratios, which come from the same run, and run it twice.

    .venv/bin/python benchmarks/template_matching.py [--data ../shared/data] [--min-lines 500000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from drain3 import TemplateMiner

from famelog.io import chronological_split, read_records
from famelog.templates import FrozenMatcher, MatcherConfig, TemplateLearner


def timed(label: str, function, contents: list[str]) -> float:
    start = time.perf_counter()
    function(contents)
    elapsed = time.perf_counter() - start
    rate = len(contents) / elapsed
    print(f"  {label:<44} {rate:>12,.0f} lines/s  ({elapsed:.2f} s)", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FAMELOG_DATA", "../shared/data"))
    parser.add_argument("--min-lines", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    path = Path(args.data) / "BGL" / "BGL_sample_69k.log.gz"
    records = list(read_records(path, "bgl"))
    train, _ = chronological_split(records, 0.8)
    config = MatcherConfig()
    template_set = TemplateLearner(config).fit(r.content for r in train).template_set_

    miner = TemplateMiner(config=config.drain3_miner_config())
    for record in train:
        miner.add_log_message(record.content)

    copies = -(-args.min_lines // len(records))
    contents = [r.content for r in records] * copies
    print(f"{path.name}: {len(records):,} lines x {copies} = {len(contents):,} lines; "
          f"{len(template_set.templates)} templates learned from {len(train):,} lines")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")

    def frozen(lines):
        matcher = FrozenMatcher(template_set)
        for line in lines:
            matcher.match(line)

    def frozen_uncached(lines):
        matcher = FrozenMatcher(template_set, cache_size=0)
        for line in lines:
            matcher.match(line)

    def drain3_match(lines):
        for line in lines:
            miner.match(line)

    contenders = [("famelog FrozenMatcher (content caches)", frozen),
                  ("famelog FrozenMatcher, caches off", frozen_uncached),
                  ("Drain3 TemplateMiner.match()", drain3_match)]
    workloads = [(f"the {len(records):,}-line sample once, cold caches", [r.content for r in records]),
                 (f"the sample replicated to {len(contents):,} lines", contents)]
    for workload, lines in workloads:
        best: dict[str, float] = {}
        for round_number in range(1, args.rounds + 1):
            print(f"{workload}, round {round_number}")
            for label, function in contenders:
                best[label] = max(best.get(label, 0.0), timed(label, function, lines))
        base = best["Drain3 TemplateMiner.match()"]
        print(f"{workload}: best of {args.rounds} round(s), relative to Drain3 match():")
        for label, rate in best.items():
            print(f"  {label:<44} {rate:>12,.0f} lines/s  {rate / base:5.2f} x")


if __name__ == "__main__":
    main()
