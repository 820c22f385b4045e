"""A partition of templates into failure domains: plain data, saved as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from famelog.jsonfile import read_json

FORMAT_NAME = "famelog-partition"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 5_000_000  # a partition of even 50k templates is far smaller; anything larger is not one


class PartitionError(ValueError):
    """A partition file that cannot be read as one."""


@dataclass
class Domain:
    """``kind`` is pure-normal, pure-anomaly or mixed once certified (from the labels); None in a raw proposal."""

    name: str
    description: str
    template_ids: list[str]
    kind: str | None = None


@dataclass
class Partition:
    domains: list[Domain]
    provenance: dict = field(default_factory=dict)  # backend, model, sha256, calls, … (never an API key)
    certified: bool = False

    def domain_of(self) -> dict[str, str]:
        """template id → domain name (the first domain that lists it)."""
        mapping: dict[str, str] = {}
        for domain in self.domains:
            for template_id in domain.template_ids:
                mapping.setdefault(template_id, domain.name)
        return mapping

    def by_name(self) -> dict[str, Domain]:
        return {d.name: d for d in self.domains}

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "certified": self.certified,
            "domains": [
                {"name": d.name, "description": d.description, "kind": d.kind, "templates": list(d.template_ids)}
                for d in self.domains
            ],
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data) -> Partition:
        """Parse leniently enough to certify a hand-written or LLM-written proposal, strictly enough to never guess:
        every structural problem raises :class:`PartitionError` with what is wrong."""
        if not isinstance(data, dict):
            raise PartitionError("a partition is a JSON object with a \"domains\" list")
        domains_raw = data.get("domains")
        if not isinstance(domains_raw, list):
            raise PartitionError("missing \"domains\" list")
        domains = []
        for position, raw in enumerate(domains_raw, start=1):
            if not isinstance(raw, dict):
                raise PartitionError(f"domain #{position} is not an object")
            name = raw.get("name")
            templates = raw.get("templates", raw.get("template_ids"))
            if not isinstance(name, str) or not name.strip():
                raise PartitionError(f"domain #{position} has no name")
            if not isinstance(templates, list) or not all(isinstance(t, (str, int)) for t in templates):
                raise PartitionError(f"domain {name!r} has no \"templates\" list of template ids")
            kind = raw.get("kind")
            domains.append(Domain(name.strip(), str(raw.get("description") or ""), [str(t) for t in templates],
                                  kind if isinstance(kind, str) else None))
        provenance = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
        return cls(domains, provenance, bool(data.get("certified", False)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Partition:
        data = read_json(path, MAX_FILE_BYTES, "a partition", PartitionError)
        try:
            return cls.from_json(data)
        except PartitionError as exc:
            raise PartitionError(f"{path}: {exc}") from None
