"""K-shot labels: which lines a person labels, the label sheet they fill, and what the labels say per template.

At most K lines per template are labelled. ``sample_kshot`` picks them, seeded and spread over time. For benchmark
data the label column plays the annotator through ``reveal_labels``: only the sampled lines' labels are passed on.
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

NORMAL = "normal"
ANOMALY = "anomaly"
# What a person may write in the label column, and what it means.
LABEL_VALUES = {
    "normal": NORMAL, "-": NORMAL, "0": NORMAL, "n": NORMAL,
    "anomaly": ANOMALY, "anomalous": ANOMALY, "1": ANOMALY, "a": ANOMALY,
}
SHEET_COLUMNS = ("source", "line", "template_id", "template", "content", "label")

PURE_NORMAL = "pure-normal"
PURE_ANOMALY = "pure-anomaly"
MIXED = "mixed"


def sample_kshot(template_ids: Sequence[str], k: int = 100, seed: int = 0) -> list[int]:
    """Indices (ascending) of at most ``k`` lines per template.

    A template's occurrences are cut into ``k`` consecutive strata of (nearly) equal size and one line is drawn from
    each, so the sample is spread over time rather than taken from the first burst. Same ``seed`` → same sample.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    positions: dict[str, list[int]] = defaultdict(list)
    for index, template_id in enumerate(template_ids):
        positions[template_id].append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for template_id in sorted(positions):
        indices = positions[template_id]
        if len(indices) <= k:
            chosen.extend(indices)
            continue
        bounds = [round(i * len(indices) / k) for i in range(k + 1)]
        chosen.extend(indices[rng.randrange(lo, hi)] for lo, hi in zip(bounds, bounds[1:]))
    return sorted(chosen)


def reveal_labels(is_anomaly: Sequence[bool | None], sampled: Iterable[int]) -> dict[int, str]:
    """The label column as annotator: labels of the sampled indices only, as ``normal`` / ``anomaly``.

    A sampled line without a label value (a malformed line) stays unlabelled."""
    return {index: ANOMALY if is_anomaly[index] else NORMAL for index in sampled if is_anomaly[index] is not None}


@dataclass(frozen=True)
class LabelledLine:
    """One labelled training line: its message text, its template and ``normal`` / ``anomaly``."""

    content: str
    template_id: str
    label: str


@dataclass(frozen=True)
class AnnotationEffort:
    labelled: int
    total: int

    @property
    def ratio(self) -> float:
        return self.labelled / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.labelled:,} labelled of {self.total:,} lines ({100 * self.ratio:.2f}%)"


@dataclass(frozen=True)
class TemplateIndicator:
    """What the K-shot labels say about one template."""

    template_id: str
    kind: str  # pure-normal | pure-anomaly | mixed
    n_normal: int
    n_anomaly: int
    examples: tuple[str, ...]


def template_indicators(
    template_ids: Sequence[str], contents: Sequence[str], labels: dict[int, str], n_examples: int = 3
) -> dict[str, TemplateIndicator]:
    """Per template with at least one label: pure-normal, pure-anomaly or mixed, plus distinct example lines.

    For a mixed template the examples include both classes.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, dict[str, list[str]]] = defaultdict(lambda: {NORMAL: [], ANOMALY: []})
    for index, label in sorted(labels.items()):
        template_id = template_ids[index]
        counts[template_id][label] += 1
        bucket = examples[template_id][label]
        if len(bucket) < n_examples and contents[index] not in bucket:
            bucket.append(contents[index])
    result = {}
    for template_id, counter in counts.items():
        n_normal, n_anomaly = counter[NORMAL], counter[ANOMALY]
        kind = MIXED if n_normal and n_anomaly else (PURE_ANOMALY if n_anomaly else PURE_NORMAL)
        normal, anomalous = examples[template_id][NORMAL], examples[template_id][ANOMALY]
        if kind == MIXED:
            picked = (anomalous[: (n_examples + 1) // 2] + normal)[:n_examples]
        else:
            picked = (normal + anomalous)[:n_examples]
        result[template_id] = TemplateIndicator(template_id, kind, n_normal, n_anomaly, tuple(picked))
    return result


@dataclass(frozen=True)
class SheetRow:
    source: str
    line: int
    template_id: str
    template: str
    content: str
    label: str = ""


def write_sheet(rows: Iterable[SheetRow], path: str | Path) -> int:
    """Write a label sheet (CSV, UTF-8). Returns the number of rows."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SHEET_COLUMNS)
        for row in rows:
            writer.writerow([row.source, row.line, row.template_id, row.template, row.content, row.label])
            count += 1
    return count


class LabelSheetError(ValueError):
    """A label sheet that cannot be used; ``problems`` lists every problem found, one message each."""

    def __init__(self, path: str, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(f"{path}: {shown}")


def read_sheet(path: str | Path, require_complete: bool = True) -> list[SheetRow]:
    """Read and validate a filled label sheet; labels come back normalised to ``normal`` / ``anomaly``.

    Raises :class:`LabelSheetError` naming every problem: missing columns, bad line numbers, duplicate lines, unknown
    label values and (with ``require_complete``) rows still unlabelled.
    """
    path = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("line", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelSheetError(path, [f"missing column(s) {', '.join(missing)}; expected {', '.join(SHEET_COLUMNS)}"])
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelSheetError(path, [f"cannot read sheet ({exc})"]) from None
    problems: list[str] = []
    rows: list[SheetRow] = []
    seen: dict[tuple[str, int], int] = {}
    unlabelled: list[int] = []
    for row_number, raw in enumerate(raw_rows, start=2):  # row 1 is the header
        if None in raw:
            problems.append(f"row {row_number}: more cells than columns (unquoted comma in content?)")
            continue
        source = (raw.get("source") or "").strip()
        try:
            line = int((raw.get("line") or "").strip())
            if line < 1:
                raise ValueError
        except ValueError:
            problems.append(f"row {row_number}: line {raw.get('line')!r} is not a positive integer")
            continue
        key = (source, line)
        if key in seen:
            problems.append(f"row {row_number}: line {line} is labelled twice (also row {seen[key]})")
            continue
        seen[key] = row_number
        value = (raw.get("label") or "").strip()
        if not value:
            unlabelled.append(row_number)
            label = ""
        elif value.lower() in LABEL_VALUES:
            label = LABEL_VALUES[value.lower()]
        else:
            problems.append(f"row {row_number}: unknown label {value!r}; use normal or anomaly")
            continue
        rows.append(SheetRow(source, line, raw.get("template_id") or "", raw.get("template") or "",
                             raw.get("content") or "", label))
    if require_complete and unlabelled:
        listed = ", ".join(map(str, unlabelled[:10])) + (" …" if len(unlabelled) > 10 else "")
        problems.append(f"{len(unlabelled):,} row(s) have no label yet (rows {listed})")
    if not raw_rows:
        problems.append("the sheet has no rows")
    if problems:
        raise LabelSheetError(path, problems)
    return rows


def _same_file(source: str) -> str:
    """One spelling per file: a sheet and a command line may name it relatively or absolutely ("<stdin>" stays)."""
    return source if source.startswith("<") else os.path.realpath(source)


def compare_sheet_with_log(rows: Sequence[SheetRow], records: Sequence, expected: Iterable[int]) -> list[str]:
    """Problems between a sheet and the log it claims to come from.

    ``records`` are the log's records and ``expected`` the indices the K-shot draw picks: a sheet row must name a
    line that exists with the same content, and every expected line must be in the sheet.
    """
    def key(source: str, line: int) -> tuple[str, int]:
        return (_same_file(source), line)

    by_key = {key(r.source, r.line): r for r in records}
    problems = []
    for row in rows:
        record = by_key.get(key(row.source, row.line))
        if record is None:
            problems.append(f"line {row.line} of {row.source or '?'} is not in the log")
        elif row.content and row.content != record.content:
            problems.append(f"line {row.line} of {row.source}: the sheet's content differs from the log's")
    present = {key(row.source, row.line) for row in rows}
    missing = [records[i] for i in expected if key(records[i].source, records[i].line) not in present]
    if missing:
        listed = ", ".join(str(r.line) for r in missing[:10]) + (" …" if len(missing) > 10 else "")
        problems.append(f"{len(missing)} sampled line(s) are missing from the sheet (lines {listed})")
    return problems


def labels_from_sheet(rows: Sequence[SheetRow], records: Sequence) -> dict[int, str]:
    """Map a checked sheet's rows onto record indices; a row naming a line that is not in ``records`` is an error.

    With a single input file rows are matched by line number alone (the sheet may spell its path differently)."""
    single = len({r.source for r in records}) == 1

    def key(source: str, line: int):
        return line if single else (_same_file(source), line)

    index = {key(r.source, r.line): i for i, r in enumerate(records)}
    labels, unknown = {}, []
    for row in rows:
        position = index.get(key(row.source, row.line))
        if position is None:
            unknown.append(row.line)
        else:
            labels[position] = row.label
    if unknown:
        raise LabelSheetError("label sheet", [f"{len(unknown)} labelled line(s) are not in the training lines "
                                              f"(e.g. line {unknown[0]})"])
    return labels
