import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from famelog.synth import generate

DATA_DIR = Path(os.environ.get("FAMELOG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BGL_SAMPLE = DATA_DIR / "BGL" / "BGL_sample_69k.log.gz"
BGL_2K = DATA_DIR / "BGL" / "loghub_2k" / "BGL_2k.log.gz"
THUNDERBIRD = DATA_DIR / "Thunderbird" / "Thunderbird_20051115_window_19k.log.gz"


def need_data(path: Path) -> Path:
    """The real data file, or a skip; CI sets FAMELOG_REQUIRE_DATA=1 so a missing file fails instead."""
    if not path.exists():
        if os.environ.get("FAMELOG_REQUIRE_DATA") == "1":
            pytest.fail(f"{path} is missing; set FAMELOG_DATA to the shared data folder")
        pytest.skip(f"{path} not found (set FAMELOG_DATA)")
    return path


@pytest.fixture(scope="session")
def synth_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "synth.log"
    path.write_text("\n".join(generate(6000, seed=7)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def training(synth_log):
    """(profiles, labelled lines) of the first 80% of the synthetic log, K=100 from the label column."""
    from famelog.io import chronological_split, read_records
    from famelog.trainset import prepare_training

    train, _ = chronological_split(list(read_records(synth_log, "bgl")), 0.8)
    data = prepare_training(train, k=100)
    return data.profiles(), data.labelled_lines()


@pytest.fixture(scope="session")
def bgl_lines() -> list[str]:
    with gzip.open(need_data(BGL_SAMPLE), "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "famelog", *map(str, args)],
        input=stdin, capture_output=True, cwd=cwd, timeout=600,
    )
