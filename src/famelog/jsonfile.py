"""Reading a JSON artifact (partition, model manifest, benchmark grid): a size bound before parsing, and one-line
errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: str | Path, max_bytes: int, what: str, error: type[Exception] = ValueError):
    """The parsed content of ``path``; ``error`` for a file larger than ``max_bytes``, unreadable or not JSON."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {size:,} bytes is too large for {what} (limit {max_bytes:,})")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
