"""FameModel: templates → domains → router → experts, fitted once, saved as JSON + safetensors, used to detect.

Per line, ``predict`` decides as follows:

- a line of a learned template belongs to its template's domain (the certified partition). If the template's K-shot
  labels are all of one class, the template decides (``template``); otherwise a pure-normal domain decides *normal*,
  a pure-anomaly domain *anomaly* (``domain``), and a mixed domain asks its expert (``expert``) — the lines whose
  label really depends on the values they carry;
- a line of an unseen template is routed by its text to a domain, and the *novelty expert* decides (``novelty``): a
  BERT classifier trained on the labelled lines of the templates of the earlier training period and calibrated on the
  templates that first appeared in its last ``novelty_holdout`` share — new templates, as detection meets them.
  Its threshold is the F1-best on those, lowered where needed to catch ``novelty_recall`` of their anomalies: a new
  failure type is what an operator must not miss.

The score is the calibrated probability of an anomaly (0 or 1 where a template or a domain alone decides).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from famelog import __version__
from famelog.domains.partition import Partition
from famelog.experts import MINILM, BertExpert, load_tokenizer
from famelog.io import Record
from famelog.jsonfile import read_json
from famelog.labels import ANOMALY, MIXED, PURE_ANOMALY, PURE_NORMAL
from famelog.router import Router
from famelog.templates import FrozenMatcher, MatcherConfig, TemplateLearner, TemplateSet

FORMAT_NAME = "famelog-model"
FORMAT_VERSION = 1
NOVELTY = "novelty"
MAX_MANIFEST_BYTES = 1_000_000
CONTEXT_FIELDS = ("Component", "Level")


class ModelError(ValueError):
    """A model artifact that cannot be used (missing, damaged, changed or of another version)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One output row per input line. ``score`` is the calibrated probability of an anomaly; ``decided_by`` is
    ``template`` (its K-shot labels are of one class), ``domain`` (a pure domain), ``expert`` (a mixed domain's
    expert) or ``novelty`` (an unseen template)."""

    source: str
    line: int
    anomaly: bool
    score: float
    domain: str
    template_id: str
    template: str
    unseen: bool
    malformed: bool
    decided_by: str
    route_confidence: float | None

    def to_row(self) -> dict:
        return asdict(self)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class FameModel:
    """``fit(records, labels, partition)`` → ``predict(records)`` → ``save(dir)`` / ``FameModel.load(dir)``."""

    def __init__(self, encoder: str = MINILM, epochs: int = 3, context_fields: Sequence[str] = CONTEXT_FIELDS,
                 novelty_per_template: int = 30, expert_per_template: int = 40, novelty_recall: float | None = 0.9,
                 novelty_holdout: float = 0.3, seed: int = 0, matcher_config: MatcherConfig | None = None,
                 cache_size: int = 1_000_000, expert_memory: dict | None = None):
        """``expert_memory``: a dict shared by several fits on the same lines (e.g. one training set under
        different partitions, as the benchmark does) so that an expert with identical training data and parameters
        is fitted once — the novelty expert never depends on the partition. Never saved."""
        if novelty_per_template < 1:
            raise ValueError(f"novelty_per_template must be >= 1, got {novelty_per_template}")
        if not 0.0 < novelty_holdout < 1.0:
            raise ValueError(f"novelty_holdout must be within (0, 1), got {novelty_holdout}")
        self.encoder = encoder
        self.epochs = epochs
        self.context_fields = tuple(context_fields)
        self.novelty_per_template = novelty_per_template
        self.expert_per_template = expert_per_template
        self.novelty_recall = novelty_recall
        self.novelty_holdout = novelty_holdout
        self.seed = seed
        self.matcher_config = matcher_config or MatcherConfig()
        self.cache_size = cache_size
        self.expert_memory = expert_memory

    # -- texts the router and the experts read ----------------------------------------------------------------------

    def _route_text(self, record: Record, masked: str) -> str:
        return line_text(record, self.context_fields, masked)

    def _expert_text(self, record: Record) -> str:
        return line_text(record, self.context_fields)

    # -- fit ----------------------------------------------------------------------------------------------------------

    def fit(self, records: Sequence[Record], labels: dict[int, str], partition: Partition,
            progress: Callable[[str, int, int], None] | None = None) -> FameModel:
        """``labels`` maps record indices to ``normal`` / ``anomaly`` (the K-shot lines only); ``partition`` is a
        certified partition of the templates these records produce."""
        started = time.perf_counter()
        records = list(records)
        if not labels:
            raise ValueError("no labelled lines to fit on")
        learner = TemplateLearner(self.matcher_config).fit(r.content for r in records)
        self.template_set_ = learner.template_set_
        template_ids = learner.assignments_
        domain_of = partition.domain_of()
        missing = sorted({t.id for t in self.template_set_.templates} - set(domain_of))
        if missing:
            raise ValueError(f"the partition does not place {len(missing)} of these templates (e.g. {missing[0]}); "
                             f"certify it against the same training lines, K and format")
        self.partition_ = partition
        self.kinds_ = {d.name: self._kind(d, template_ids, labels, domain_of) for d in partition.domains}
        by_template: dict[str, set] = {}
        for i, label in labels.items():
            by_template.setdefault(template_ids[i], set()).add(label)
        self.template_kinds_ = {t: (MIXED if len(c) == 2 else PURE_ANOMALY if c == {ANOMALY} else PURE_NORMAL)
                                for t, c in sorted(by_template.items())}
        matcher = FrozenMatcher(self.template_set_)
        indices = sorted(labels)
        masked = {i: matcher.mask(records[i].content) for i in indices}
        self.router_ = Router().fit([self._route_text(records[i], masked[i]) for i in indices],
                                    [domain_of[template_ids[i]] for i in indices])
        # The labelled lines, kept for `explain` (nearest labelled examples); at most 5 per template.
        shown: Counter = Counter()
        self.examples_ = []
        for i in indices:
            if shown[template_ids[i]] < 5:
                shown[template_ids[i]] += 1
                self.examples_.append({"text": self._route_text(records[i], masked[i]), "content": records[i].content,
                                       "template_id": template_ids[i], "label": labels[i]})
        self.tokenizer_ = load_tokenizer(_tokenizer_source())
        self.experts_: dict[str, BertExpert] = {}
        for domain in partition.domains:
            if self.kinds_[domain.name] != MIXED:
                continue
            chosen = capped_per_template([i for i in indices if domain_of[template_ids[i]] == domain.name],
                                         template_ids, labels, self.expert_per_template)
            self.experts_[domain.name] = self._fit_expert(
                [self._expert_text(records[i]) for i in chosen], [labels[i] == ANOMALY for i in chosen],
                None, f"expert {domain.name}", progress)
        # The novelty expert learns from the templates of the earlier training period and is calibrated on those
        # that first appeared in its last `novelty_holdout` share: new templates, as detection will meet them.
        first_seen: dict[str, int] = {}
        for position, template_id in enumerate(template_ids):
            first_seen.setdefault(template_id, position)
        late = {t for t, position in first_seen.items() if position >= (1 - self.novelty_holdout) * len(records)}
        chosen = capped_per_template(indices, template_ids, labels, self.novelty_per_template)
        y = [labels[i] == ANOMALY for i in chosen]
        self.novelty_ = self._fit_expert([self._expert_text(records[i]) for i in chosen], y,
                                         [template_ids[i] for i in chosen], "novelty expert", progress,
                                         target_recall=self.novelty_recall, calibration_groups=late) \
            if len(set(y)) == 2 else None
        self.fit_seconds_ = time.perf_counter() - started
        self.reset_state()
        return self

    @staticmethod
    def _kind(domain, template_ids, labels, domain_of) -> str:
        if domain.kind in (PURE_NORMAL, PURE_ANOMALY, MIXED):
            return domain.kind
        classes = {labels[i] for i in labels if domain_of[template_ids[i]] == domain.name}
        return MIXED if len(classes) == 2 else (PURE_ANOMALY if classes == {ANOMALY} else PURE_NORMAL)

    def _fit_expert(self, texts, y, groups, what, progress, target_recall=None, calibration_groups=None) -> BertExpert:
        report = (lambda done, total: progress(what, done, total)) if progress else None
        expert = BertExpert(encoder=self.encoder, epochs=self.epochs, target_recall=target_recall, seed=self.seed)
        key = None
        if self.expert_memory is not None:
            key = hashlib.sha256(json.dumps([texts, [bool(v) for v in y], groups, sorted(calibration_groups or ()),
                                             vars(expert)], sort_keys=True).encode()).hexdigest()
            if key in self.expert_memory:
                return self.expert_memory[key]
        expert.fit(texts, y, tokenizer=self.tokenizer_, groups=groups, progress=report,
                   calibration_groups=calibration_groups)
        if key is not None:
            self.expert_memory[key] = expert
        return expert

    # -- predict ------------------------------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Forget the caches and the provisional templates of unseen lines (detection starts afresh)."""
        self._matcher = FrozenMatcher(self.template_set_, cache_size=self.cache_size)
        self._domain_of = self.partition_.domain_of()
        self._routes: dict[str, tuple[str, float]] = {}
        self._scores: dict[str, dict[str, float]] = {name: {} for name in [*self.experts_, NOVELTY]}

    def predict(self, records: Iterable[Record]) -> list[Prediction]:
        """One :class:`Prediction` per record, in order. The label of a record is never read."""
        records = list(records)
        matches = [self._matcher.match(r.content) for r in records]
        # Route every unseen line (cached by its text: routing reads the masked message, never raw values).
        route_texts = {i: self._route_text(r, self._matcher.mask(r.content))
                       for i, (r, m) in enumerate(zip(records, matches)) if m.unseen}
        routes = self._cached_or_computed(self._routes, set(route_texts.values()), self._route)
        # Which expert scores which line; experts read the raw message (values decide a mixed template).
        needs: dict[int, str] = {}
        for i, match in enumerate(matches):
            if match.unseen:
                if self.novelty_ is not None:
                    needs[i] = NOVELTY
            elif self.template_kinds_.get(match.template_id) not in (PURE_NORMAL, PURE_ANOMALY) and \
                    self.kinds_[self._domain_of[match.template_id]] == MIXED:
                needs[i] = self._domain_of[match.template_id]
        expert_texts = {i: self._expert_text(records[i]) for i in needs}
        scores: dict[str, dict[str, float]] = {}
        for name in set(needs.values()):
            expert = self.novelty_ if name == NOVELTY else self.experts_[name]
            wanted = {expert_texts[i] for i, n in needs.items() if n == name}
            scores[name] = self._cached_or_computed(self._scores[name], wanted,
                                                    lambda texts, e=expert: e.predict_proba(texts).tolist())
        rows = []
        for i, (record, match) in enumerate(zip(records, matches)):
            confidence = None
            if match.unseen:
                domain, confidence = routes[route_texts[i]]
            else:
                domain = self._domain_of[match.template_id]
            name = needs.get(i)
            template_kind = None if match.unseen else self.template_kinds_.get(match.template_id)
            if name is None and template_kind in (PURE_NORMAL, PURE_ANOMALY):
                score, decided_by = float(template_kind == PURE_ANOMALY), "template"
                anomaly = score >= 0.5
            elif name is None:
                # A pure domain decides (also an unseen line when the training labels had one class only).
                score, decided_by = float(self.kinds_[domain] == PURE_ANOMALY), "domain"
                anomaly = score >= 0.5
            else:
                expert = self.novelty_ if name == NOVELTY else self.experts_[name]
                score = scores[name][expert_texts[i]]
                anomaly = score >= expert.threshold_
                decided_by = "novelty" if name == NOVELTY else "expert"
            rows.append(Prediction(record.source, record.line, bool(anomaly), round(float(score), 6), domain,
                                   match.template_id, match.template, match.unseen, record.malformed, decided_by,
                                   None if confidence is None else round(float(confidence), 4)))
        return rows

    def _route(self, texts: list[str]) -> list[tuple[str, float]]:
        domains, confidences = self.router_.predict(texts)
        return list(zip(domains, confidences.tolist()))

    def _cached_or_computed(self, cache: dict, keys: set, compute) -> dict:
        """The values for ``keys`` in this batch: from ``cache`` where present, else computed (sorted, one call) and
        remembered. Returned as its own dict, so emptying a full cache cannot lose a value the batch still needs."""
        found = {key: cache[key] for key in keys if key in cache}
        missing = sorted(keys - found.keys())
        if missing:
            computed = dict(zip(missing, compute(missing)))
            if len(cache) + len(computed) > self.cache_size:
                cache.clear()
            cache.update(computed)
            found.update(computed)
        return found

    # -- explain ------------------------------------------------------------------------------------------------------

    def explain(self, record: Record) -> dict:
        """How one line is decided: template, route and confidence, domain, expert score and threshold."""
        prediction = self.predict([record])[0]
        masked = self._matcher.mask(record.content)
        routes, confidences = self.router_.predict([self._route_text(record, masked)])
        expert = self.novelty_ if prediction.decided_by == "novelty" else self.experts_.get(prediction.domain)
        return {
            "prediction": prediction.to_row(),
            "masked": masked,
            "route": {"domain": routes[0], "confidence": round(float(confidences[0]), 4)},
            "domain_kind": self.kinds_.get(prediction.domain),
            "threshold": expert.threshold_ if expert is not None and prediction.decided_by in ("expert", "novelty")
            else None,
            "nearest_labelled": self.nearest_examples(self._route_text(record, masked)),
        }

    def nearest_examples(self, text: str, n: int = 3) -> list[dict]:
        """The labelled training lines most similar to ``text`` (cosine over the router's TF-IDF)."""
        if not self.examples_:
            return []
        vectorizer = self.router_.vectorizer_
        matrix = vectorizer.transform([e["text"] for e in self.examples_])
        similarity = (matrix @ vectorizer.transform([text]).T).toarray().ravel()
        best = np.argsort(-similarity, kind="stable")[:n]
        return [{"similarity": round(float(similarity[i]), 3), "label": self.examples_[i]["label"],
                 "template_id": self.examples_[i]["template_id"], "content": self.examples_[i]["content"]}
                for i in best]

    # -- persistence --------------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = ["templates.json", "partition.json", "examples.json"]
        (directory / "examples.json").write_text(json.dumps(self.examples_, ensure_ascii=False), encoding="utf-8")
        self.template_set_.save(directory / "templates.json")
        self.partition_.save(directory / "partition.json")
        files += [f"router/{name}" for name in self.router_.save(directory / "router")]
        self.tokenizer_.save_pretrained(str(directory / "tokenizer"))
        files += [f"tokenizer/{p.name}" for p in sorted((directory / "tokenizer").iterdir())]
        experts = {}
        for position, (name, expert) in enumerate(sorted(self.experts_.items())):
            folder = f"experts/{position}"
            files += [f"{folder}/{f}" for f in expert.save(directory / folder)]
            experts[name] = folder
        if self.novelty_ is not None:
            files += [f"novelty/{f}" for f in self.novelty_.save(directory / "novelty")]
        manifest = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "famelog": __version__,
            "params": {"encoder": self.encoder, "epochs": self.epochs, "context_fields": list(self.context_fields),
                       "novelty_per_template": self.novelty_per_template,
                       "expert_per_template": self.expert_per_template, "novelty_recall": self.novelty_recall,
                       "novelty_holdout": self.novelty_holdout, "seed": self.seed},
            "kinds": self.kinds_, "template_kinds": self.template_kinds_, "experts": experts, "novelty": self.novelty_ is not None,
            "fit_seconds": round(getattr(self, "fit_seconds_", 0.0), 1),
            "files": {name: _sha256(directory / name) for name in files},
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FameModel:
        """Load a saved model after checking its format, version and every file's sha256. Runs no code."""
        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            raise ModelError(f"{directory}: not a famelog model (no manifest.json)")
        manifest = read_json(manifest_path, MAX_MANIFEST_BYTES, "a famelog manifest", ModelError)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise ModelError(f"{directory}: not a famelog model (manifest format is not {FORMAT_NAME!r})")
        if manifest.get("version") != FORMAT_VERSION:
            raise ModelError(f"{directory}: model format version {manifest.get('version')!r}; this famelog "
                             f"({__version__}) reads version {FORMAT_VERSION}; fit the model again")
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise ModelError(f"{directory}: the manifest lists no files")
        for name, expected in files.items():
            path = (directory / name).resolve()
            if directory.resolve() not in path.parents:
                raise ModelError(f"{directory}: the manifest names a file outside the model: {name!r}")
            if not path.is_file():
                raise ModelError(f"{directory}: {name} is missing")
            if _sha256(path) != expected:
                raise ModelError(f"{directory}: {name} was changed or damaged (sha256 differs from the manifest); "
                                 f"refusing to load")
        try:
            params = manifest["params"]
            model = cls(encoder=params["encoder"], epochs=params["epochs"], context_fields=params["context_fields"],
                        novelty_per_template=params["novelty_per_template"],
                        expert_per_template=params["expert_per_template"], novelty_recall=params["novelty_recall"],
                        novelty_holdout=params["novelty_holdout"], seed=params["seed"])
            model.template_set_ = TemplateSet.load(directory / "templates.json")
            model.matcher_config = model.template_set_.config
            model.partition_ = Partition.load(directory / "partition.json")
            model.kinds_ = dict(manifest["kinds"])
            model.template_kinds_ = dict(manifest["template_kinds"])
            model.examples_ = json.loads((directory / "examples.json").read_text(encoding="utf-8"))
            model.router_ = Router.load(directory / "router")
            model.tokenizer_ = load_tokenizer(directory / "tokenizer")
            model.experts_ = {name: BertExpert.load(directory / folder, model.tokenizer_)
                              for name, folder in manifest["experts"].items()}
            model.novelty_ = BertExpert.load(directory / "novelty", model.tokenizer_) if manifest["novelty"] else None
            model.fit_seconds_ = manifest.get("fit_seconds", 0.0)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ModelError(f"{directory}: incomplete or inconsistent model ({type(exc).__name__}: {exc})") from None
        model.reset_state()
        return model


def line_text(record: Record, context_fields: Sequence[str] = CONTEXT_FIELDS, content: str | None = None) -> str:
    """What a classifier reads of a line: its context fields (e.g. component and level), then its message (or
    ``content``, e.g. the masked message). Never the label."""
    context = " ".join(record.fields.get(name, "") for name in context_fields).strip()
    return f"{context} {record.content if content is None else content}".strip()


def capped_per_template(indices: list[int], template_ids: Sequence[str], labels: dict[int, str], cap: int) -> list[int]:
    """At most ``cap`` lines per (template, label): bounds CPU time while keeping the rarer class of a mixed
    template whole."""
    taken: Counter = Counter()
    chosen = []
    for i in indices:
        key = (template_ids[i], labels[i])
        if taken[key] < cap:
            taken[key] += 1
            chosen.append(i)
    return chosen


def _tokenizer_source() -> Path:
    from famelog.encoder import minilm_path

    return minilm_path()
