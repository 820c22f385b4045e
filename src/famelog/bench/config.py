"""The benchmark grid, read from a JSON file (``benchmarks/bench.json``): datasets and their formats are data.

Costly methods (those that fine-tune MiniLM beyond famelog itself) can be limited to the main split and K, where
they are compared with famelog; cheap ones run over the whole grid. ``"grid": "sweeps"`` runs the K sweep at the main
split and the split sweep at the main K instead of every split × every K (what the report plots, at a third of the
CPU time).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from famelog.jsonfile import read_json

MAX_CONFIG_BYTES = 1_000_000


class BenchConfigError(ValueError):
    """A benchmark configuration that cannot be used."""


@dataclass(frozen=True)
class Dataset:
    """``proposals`` maps a train fraction (as written, e.g. ``"0.8"``) to LLM proposal files (paths relative to
    the configuration file) proposed on exactly that training split."""

    name: str
    path: str
    format: str
    proposals: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    dataset: Dataset
    split: float
    k: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset.name}-{round(self.split * 100)}-k{self.k}-s{self.seed}"

    def is_main(self, config: BenchConfig) -> bool:
        return self.split == config.main_split and self.k == config.main_k


@dataclass(frozen=True)
class BenchConfig:
    datasets: list[Dataset]
    splits: list[float]
    ks: list[int]
    seeds: list[int]
    other_split_seeds: list[int]  # the seeds of the splits other than the main one (CPU time)
    main_split: float
    main_k: int
    costly_everywhere: bool
    full_grid: bool  # every split × every K; else the K sweep at the main split and the split sweep at the main K
    epochs: int
    encoder: str  # minilm; tiny (a small random BERT) only to test the harness itself
    speed_lines: int
    minilm_speed_lines: int
    base: Path  # the folder proposal paths are relative to

    def runs(self) -> list[Run]:
        """Main split and K first (the headline figures are ready first), then the rest of the grid."""
        cells = [Run(d, s, k, seed) for d in self.datasets for s in self.splits for k in self.ks
                 for seed in (self.seeds if s == self.main_split else self.other_split_seeds)
                 if self.full_grid or s == self.main_split or k == self.main_k]
        return sorted(cells, key=lambda r: (not r.is_main(self), self.datasets.index(r.dataset), -r.split, -r.k,
                                            r.seed))

    def to_json(self) -> dict:
        return {"datasets": [{"name": d.name, "path": d.path, "format": d.format, "proposals": d.proposals}
                             for d in self.datasets],
                "splits": self.splits, "ks": self.ks, "seeds": self.seeds,
                "other_split_seeds": self.other_split_seeds, "main_split": self.main_split,
                "main_k": self.main_k, "costly_methods_everywhere": self.costly_everywhere,
                "grid": "full" if self.full_grid else "sweeps", "epochs": self.epochs,
                "encoder": self.encoder, "speed_lines": self.speed_lines,
                "minilm_speed_lines": self.minilm_speed_lines}

    def quick(self) -> BenchConfig:
        """The CI grid: the main split, K = main K and the smallest K, one seed."""
        return replace(self, splits=[self.main_split], ks=sorted({self.main_k, min(self.ks)}, reverse=True),
                       seeds=self.seeds[:1], other_split_seeds=self.seeds[:1],
                       speed_lines=min(self.speed_lines, 200_000), minilm_speed_lines=min(self.minilm_speed_lines, 512))


def load_config(path: str | Path) -> BenchConfig:
    path = Path(path)
    raw = read_json(path, MAX_CONFIG_BYTES, "a benchmark configuration", BenchConfigError)
    try:
        datasets = [Dataset(str(d["name"]), str(d["path"]), str(d["format"]),
                            {str(s): dict(p) for s, p in d.get("proposals", {}).items()}) for d in raw["datasets"]]
        config = BenchConfig(datasets, [float(s) for s in raw["splits"]], [int(k) for k in raw["ks"]],
                             [int(s) for s in raw["seeds"]],
                             [int(s) for s in raw.get("other_split_seeds", raw["seeds"])],
                             float(raw["main"]["split"]), int(raw["main"]["k"]),
                             bool(raw.get("costly_methods_everywhere", False)), raw.get("grid", "full") == "full",
                             int(raw.get("epochs", 3)),
                             str(raw.get("encoder", "minilm")),
                             int(raw.get("speed_lines", 1_000_000)), int(raw.get("minilm_speed_lines", 2048)),
                             path.resolve().parent)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchConfigError(f"{path}: malformed benchmark configuration ({type(exc).__name__}: {exc})") from None
    problems = []
    if not datasets or len({d.name for d in datasets}) != len(datasets):
        problems.append("datasets must be a non-empty list with distinct names")
    if not config.splits or not all(0.0 < s < 1.0 for s in config.splits):
        problems.append("every split must be a train fraction within (0, 1)")
    if not config.ks or min(config.ks) < 1 or not config.seeds or not config.other_split_seeds:
        problems.append("ks must be >= 1 and seeds (and other_split_seeds) non-empty")
    if config.main_split not in config.splits or config.main_k not in config.ks:
        problems.append("main.split and main.k must be among splits and ks")
    if raw.get("grid", "full") not in ("full", "sweeps"):
        problems.append(f"grid must be full or sweeps, got {raw.get('grid')!r}")
    if config.encoder not in ("minilm", "tiny"):
        problems.append(f"encoder must be minilm or tiny, got {config.encoder!r}")
    if config.epochs < 1 or config.speed_lines < 1 or config.minilm_speed_lines < 1:
        problems.append("epochs, speed_lines and minilm_speed_lines must be >= 1")
    for dataset in datasets:
        for split, files in dataset.proposals.items():
            for label, file in files.items():
                if not (config.base / file).is_file():
                    problems.append(f"{dataset.name}: proposal {label!r} for split {split}: {file} not found")
    if problems:
        raise BenchConfigError(f"{path}: " + "; ".join(problems))
    return config
