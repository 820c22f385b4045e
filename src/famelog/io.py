"""Log readers: a log format is data (a LogPAI-style format string), not code.

A format string names the header fields in angle brackets, e.g.
``<Label> <Epoch> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>``.
``<Content>`` is required and takes the rest of the line. ``<Label>`` is special: its value is ground truth and is
kept apart from the fields so that it can never reach a feature or a model.

Every input line yields exactly one :class:`Record`, in order. A line that does not fit the format is flagged
``malformed`` and its whole text becomes the content. Bytes that are not UTF-8 are replaced by U+FFFD.
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

LABEL_FIELD = "Label"
CONTENT_FIELD = "Content"
NORMAL_LABEL = "-"

BUILTIN_FORMATS: dict[str, str] = {
    "bgl": "<Label> <Epoch> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
    # The component ("snmpd[1980]:", "Server Administrator:") stays in the content: it may hold spaces, and it is
    # part of what makes a message a message.
    "thunderbird": "<Label> <Epoch> <Date> <User> <Month> <Day> <Time> <Location> <Content>",
    "raw": "<Content>",
}

_FIELD_PATTERN = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
_GZIP_MAGIC = b"\x1f\x8b"


class LogFormatError(ValueError):
    """A format string that cannot describe a log line."""


class LogReadError(RuntimeError):
    """An input that cannot be read to the end (missing file, truncated or corrupt gzip)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One input line.

    ``line`` is 1-based within ``source``. ``fields`` holds the header fields of the format, never the label.
    ``label`` is the raw label token (``"-"`` means normal) or None when the format has no label column.
    """

    source: str
    line: int
    content: str
    fields: dict[str, str] = field(default_factory=dict)
    label: str | None = None
    malformed: bool = False

    @property
    def is_anomaly(self) -> bool | None:
        """Ground truth from the label column: None when there is none."""
        if self.label is None:
            return None
        return self.label != NORMAL_LABEL


class LogFormat:
    """A parsed format string. ``parse(text)`` turns one line of text into (label, fields, content, malformed)."""

    def __init__(self, spec: str):
        self.spec = BUILTIN_FORMATS.get(spec, spec)
        names = _FIELD_PATTERN.findall(self.spec)
        if CONTENT_FIELD not in names:
            raise LogFormatError(
                f"format {spec!r} has no <Content> field; use one of {sorted(BUILTIN_FORMATS)} or a string "
                f"such as '<Date> <Time> <Level> <Content>'"
            )
        if len(set(names)) != len(names):
            raise LogFormatError(f"format {spec!r} names a field twice")
        self.names = names
        self.header_names = [n for n in names if n != CONTENT_FIELD]
        self.has_label = LABEL_FIELD in names
        literal = _FIELD_PATTERN.sub("", self.spec)
        # Fast path: fields separated by whitespace only, content last -> str.split.
        self._simple = names[-1] == CONTENT_FIELD and literal.strip() == ""
        self._regex = None if self._simple else re.compile(self._to_regex(self.spec))

    @staticmethod
    def _to_regex(spec: str) -> str:
        parts = re.split(r"(<[A-Za-z_][A-Za-z0-9_]*>)", spec)
        out = []
        for part in parts:
            match = _FIELD_PATTERN.fullmatch(part)
            if match:
                name = match.group(1)
                # Header fields never span whitespace; this keeps matching linear on long lines.
                out.append(f"(?P<{name}>.*)" if name == CONTENT_FIELD else f"(?P<{name}>\\S+?)")
            else:
                out.append(r"\s+".join(re.escape(piece) for piece in re.split(r"\s+", part)))
        return "^" + "".join(out) + "$"

    def parse(self, text: str) -> tuple[str | None, dict[str, str], str, bool]:
        if self._simple:
            n_header = len(self.header_names)
            parts = text.split(None, n_header) if n_header else [text]
            if len(parts) < n_header:
                return None, {}, text, True
            values = dict(zip(self.header_names, parts))
            content = parts[n_header] if len(parts) > n_header else ""
        else:
            match = self._regex.match(text)
            if match is None:
                return None, {}, text, True
            values = match.groupdict()
            content = values.pop(CONTENT_FIELD)
        label = values.pop(LABEL_FIELD, None)
        return label, values, content, False


def _open_binary(path: str) -> tuple[BinaryIO, bool]:
    """Open ``path`` ('-' = stdin) for binary reading; detect gzip by its magic bytes, not by the name."""
    if path == "-":
        stream: BinaryIO = sys.stdin.buffer
        if not isinstance(stream, io.BufferedReader):
            stream = io.BufferedReader(stream)  # type: ignore[arg-type]
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by read_records
        except OSError as exc:
            raise LogReadError(f"{path}: cannot open ({exc.strerror or exc})") from None
    is_gzip = stream.peek(2)[:2] == _GZIP_MAGIC  # type: ignore[attr-defined]
    return stream, is_gzip


def iter_lines(path: str) -> Iterator[str]:
    """Yield the decoded lines of one input without their line ends (LF or CRLF)."""
    raw, is_gzip = _open_binary(path)
    stream: BinaryIO = gzip.GzipFile(fileobj=raw) if is_gzip else raw  # type: ignore[assignment]
    name = "<stdin>" if path == "-" else path
    count = 0
    try:
        for raw_line in stream:
            count += 1
            yield raw_line.rstrip(b"\r\n").decode("utf-8", errors="replace")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LogReadError(f"{name}: gzip data is truncated or corrupt after line {count} ({exc})") from None
    finally:
        if path != "-":
            raw.close()


def read_records(paths: str | Path | Iterable[str | Path], log_format: str | LogFormat = "raw") -> Iterator[Record]:
    """Yield one :class:`Record` per line of each input, in order. ``'-'`` reads stdin."""
    fmt = log_format if isinstance(log_format, LogFormat) else LogFormat(log_format)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        source = "<stdin>" if str(path) == "-" else str(path)
        for number, text in enumerate(iter_lines(str(path)), start=1):
            label, values, content, malformed = fmt.parse(text)
            yield Record(source, number, content, values, label, malformed)


def chronological_split(records: list[Record], train_fraction: float) -> tuple[list[Record], list[Record]]:
    """First ``train_fraction`` of the records (input order is time order) for training, the rest for testing."""
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train fraction must be in (0, 1], got {train_fraction}")
    cut = int(round(len(records) * train_fraction))
    return records[:cut], records[cut:]
