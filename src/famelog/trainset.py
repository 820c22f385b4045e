"""The training side of the pipeline up to the domains: records → templates → K-shot labels → profiles.

Labels come either from the log's label column (benchmarks: only the sampled ≤K lines per template are revealed) or
from a person's filled label sheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from famelog import labels as labelling
from famelog.domains.profile import TemplateProfile, build_profiles
from famelog.io import Record
from famelog.templates import MatcherConfig, TemplateLearner, TemplateSet

FIRST_COLUMN = "first-column"


@dataclass
class TrainingData:
    records: list[Record]
    template_set: TemplateSet
    template_ids: list[str]  # per record, the template it was learned into
    labels: dict[int, str]  # record index → normal | anomaly, for the labelled lines only
    sampled: list[int]  # the K-shot draw (what a person is asked to label)

    @property
    def effort(self) -> labelling.AnnotationEffort:
        return labelling.AnnotationEffort(len(self.labels), len(self.records))

    def profiles(self) -> list[TemplateProfile]:
        return build_profiles(self.template_set, self.template_ids, [r.content for r in self.records], self.labels)

    def labelled_lines(self) -> list[labelling.LabelledLine]:
        return [labelling.LabelledLine(self.records[i].content, self.template_ids[i], label)
                for i, label in sorted(self.labels.items())]


def prepare_training(records: Sequence[Record], k: int = 100, seed: int = 0, label_source: str | Path = FIRST_COLUMN,
                     config: MatcherConfig | None = None,
                     track: Callable[[Iterable, str, int], Iterable] | None = None) -> TrainingData:
    """Learn templates, draw the K-shot sample and obtain its labels. ``track`` wraps long loops for progress."""
    records = list(records)
    if not records:
        raise ValueError("no training lines")
    contents = [r.content for r in records]
    learner = TemplateLearner(config).fit(track(contents, "learning templates", len(contents)) if track else contents)
    sampled = labelling.sample_kshot(learner.assignments_, k=k, seed=seed)
    if str(label_source) == FIRST_COLUMN:
        if all(r.label is None for r in records):
            raise ValueError("--labels first-column needs a format with a <Label> field; use a label sheet")
        revealed = labelling.reveal_labels([r.is_anomaly for r in records], sampled)
    else:
        rows = labelling.read_sheet(label_source)
        revealed = labelling.labels_from_sheet(rows, records)
    return TrainingData(records, learner.template_set_, learner.assignments_, revealed, sampled)
