"""What the proposer sees of each training template: id, text, K-shot indicator, counts and a few example lines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence

from famelog.labels import template_indicators
from famelog.templates import TemplateSet

UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class TemplateProfile:
    template_id: str
    text: str
    count: int  # training lines of this template
    indicator: str  # pure-normal | pure-anomaly | mixed | unlabelled
    n_normal: int  # labelled normal lines
    n_anomaly: int  # labelled anomalous lines
    examples: tuple[str, ...]

    def to_json(self) -> dict:
        return asdict(self) | {"examples": list(self.examples)}

    @classmethod
    def from_json(cls, data: dict) -> TemplateProfile:
        return cls(**(data | {"examples": tuple(data["examples"])}))


def build_profiles(
    template_set: TemplateSet, template_ids: Sequence[str], contents: Sequence[str], labels: dict[int, str]
) -> list[TemplateProfile]:
    """One profile per learned template, in template order. ``template_ids`` and ``contents`` are per training line;
    ``labels`` maps a training line index to ``normal`` / ``anomaly`` for the labelled lines only."""
    indicators = template_indicators(template_ids, contents, labels)
    first_line: dict[str, str] = {}
    for template_id, content in zip(template_ids, contents):
        first_line.setdefault(template_id, content)
    profiles = []
    for template in template_set.templates:
        indicator = indicators.get(template.id)
        if indicator is None:
            example = first_line.get(template.id)
            profiles.append(TemplateProfile(template.id, template.text, template.count, UNLABELLED, 0, 0,
                                            (example,) if example is not None else ()))
        else:
            profiles.append(TemplateProfile(template.id, template.text, template.count, indicator.kind,
                                            indicator.n_normal, indicator.n_anomaly, indicator.examples))
    return profiles


def profiles_fingerprint(profiles: Sequence[TemplateProfile]) -> str:
    """A stable digest of the proposer's whole input: same templates and labels, same fingerprint."""
    import hashlib

    text = json.dumps([p.to_json() for p in profiles], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
