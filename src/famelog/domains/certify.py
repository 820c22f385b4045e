"""Certification: validate a proposed partition before anything is trained, repair it or refuse it.

Checks, each reported with its evidence:

- **exact cover**: every training template in exactly one domain, no invented ids, no empty or duplicate domains;
- **label consistency**: each domain is tagged pure-normal / pure-anomaly / mixed from the K-shot labels, and a
  domain proposed as pure-anomaly holds no template with a normal label (and vice versa);
- **support**: a mixed domain has at least ``min_support`` labelled lines of each class, enough to train and
  calibrate its expert;
- **separability**: cross-validated routing accuracy on the labelled lines (TF-IDF + logistic regression on the
  message text), with the confused domain pairs named.

Failures are repaired deterministically — move (a missing template to its nearest domain, or to the domain an
``advisor`` such as the LLM names), split (a mixed domain without support into its pure parts), merge (a domain
without support or a confused pair) — and checked again, for at most ``max_rounds`` rounds. The outcome is a
certified partition or a refusal that says why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline

from famelog.domains.partition import Domain, Partition
from famelog.domains.profile import TemplateProfile
from famelog.labels import MIXED, PURE_ANOMALY, PURE_NORMAL, LabelledLine

UNLABELLED_DOMAIN = "unlabelled"

Advisor = Callable[[TemplateProfile, list[Domain], str], "str | None"]
"""Asked where a template belongs, given the domains and the violation; returns a domain name or None."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    evidence: list[str] = field(default_factory=list)


@dataclass
class Round:
    number: int
    checks: list[CheckResult]
    repairs: list[str] = field(default_factory=list)


@dataclass
class CertificationReport:
    outcome: str = "refused"  # certified | refused
    reason: str = ""
    rounds: list[Round] = field(default_factory=list)
    routing_accuracy: float | None = None
    confused_pairs: list[tuple[str, str, float]] = field(default_factory=list)
    domain_table: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "routing_accuracy": self.routing_accuracy,
            "confused_pairs": [list(p) for p in self.confused_pairs],
            "domains": self.domain_table,
            "rounds": [
                {"round": r.number, "repairs": r.repairs,
                 "checks": [{"check": c.name, "passed": c.passed, "evidence": c.evidence} for c in r.checks]}
                for r in self.rounds
            ],
        }

    def to_markdown(self) -> str:
        lines = [f"# Certification report: {self.outcome.upper()}", ""]
        if self.reason:
            lines += [self.reason, ""]
        if self.routing_accuracy is not None:
            lines += [f"Cross-validated routing accuracy on labelled lines: {self.routing_accuracy:.4f}", ""]
        if self.domain_table:
            lines += ["| domain | kind | templates | labelled normal | labelled anomalous | description |",
                      "|---|---|---:|---:|---:|---|"]
            for row in self.domain_table:
                lines.append(f"| {row['name']} | {row['kind']} | {row['templates']} | {row['n_normal']} | "
                             f"{row['n_anomaly']} | {row['description'].replace('|', '/')} |")
            lines.append("")
        for round_ in self.rounds:
            lines.append(f"## Round {round_.number}")
            for check in round_.checks:
                lines.append(f"- **{check.name}**: {'pass' if check.passed else 'FAIL'}")
                lines += [f"  - {e}" for e in check.evidence[:25]]
                if len(check.evidence) > 25:
                    lines.append(f"  - … and {len(check.evidence) - 25} more")
            if round_.repairs:
                lines.append("- repairs:")
                lines += [f"  - {r}" for r in round_.repairs]
            lines.append("")
        return "\n".join(lines)


class Certifier:
    """Validate, repair or refuse a proposed partition (sklearn-style: parameters stored and checked here)."""

    def __init__(self, min_support: int = 8, min_routing_accuracy: float = 0.9, max_confusion: float = 0.2,
                 max_rounds: int = 6, cv_folds: int = 3, seed: int = 0):
        if min_support < 1:
            raise ValueError(f"min_support must be >= 1, got {min_support}")
        if not 0.0 <= min_routing_accuracy <= 1.0:
            raise ValueError(f"min_routing_accuracy must be within [0, 1], got {min_routing_accuracy}")
        if not 0.0 < max_confusion <= 1.0:
            raise ValueError(f"max_confusion must be within (0, 1], got {max_confusion}")
        if max_rounds < 1 or cv_folds < 2:
            raise ValueError("max_rounds must be >= 1 and cv_folds >= 2")
        self.min_support = min_support
        self.min_routing_accuracy = min_routing_accuracy
        self.max_confusion = max_confusion
        self.max_rounds = max_rounds
        self.cv_folds = cv_folds
        self.seed = seed

    def certify(self, proposal: Partition, profiles: Sequence[TemplateProfile], lines: Sequence[LabelledLine],
                advisor: Advisor | None = None) -> tuple[Partition | None, CertificationReport]:
        self._profiles = {p.template_id: p for p in profiles}
        self._similarity = _TextSimilarity(profiles)
        report = CertificationReport()
        domains = [Domain(d.name, d.description, list(d.template_ids), d.kind) for d in proposal.domains]
        if not self._profiles:
            report.reason = "refused: there are no training templates to partition"
            return None, report
        for number in range(1, self.max_rounds + 1):
            round_ = Round(number, [])
            report.rounds.append(round_)
            domains, done = self._round(domains, lines, round_, advisor, report, final=number == self.max_rounds)
            if done:
                break
            if not domains:
                report.reason = "refused: no domain is left after repairs"
                return None, report
        if not report.rounds[-1].checks or not all(c.passed for c in report.rounds[-1].checks):
            failing = [c.name for c in report.rounds[-1].checks if not c.passed]
            report.reason = (f"refused: after {len(report.rounds)} round(s) these checks still fail: "
                             f"{', '.join(failing)}")
            return None, report
        certified = Partition(domains, dict(proposal.provenance), certified=True)
        report.outcome = "certified"
        report.reason = f"certified after {len(report.rounds)} round(s): {len(domains)} domains"
        return certified, report

    # -- one round: run every check, repair what failed ------------------------------------------------------------

    def _round(self, domains, lines, round_, advisor, report, final):
        cover, domains = self._check_cover(domains, round_, advisor)
        round_.checks.append(cover)
        consistency = self._check_consistency(domains, round_)
        round_.checks.append(consistency)
        support, changed = self._check_support(domains, round_, repair=not final)
        round_.checks.append(support)
        if changed:
            domains = changed
        separability, merged = self._check_separability(domains, lines, report, round_,
                                                        repair=not final and support.passed)
        round_.checks.append(separability)
        if merged:
            domains = merged
        self._fill_table(domains, report)
        return domains, all(c.passed for c in round_.checks)

    def _check_cover(self, domains: list[Domain], round_: Round, advisor: Advisor | None):
        evidence = []
        known = self._profiles
        # duplicate domain names: merge them (the proposer meant one domain)
        merged: dict[str, Domain] = {}
        for domain in domains:
            if domain.name in merged:
                evidence.append(f"domain name {domain.name!r} appears twice")
                round_.repairs.append(f"merge: the two domains named {domain.name!r}")
                merged[domain.name].template_ids += domain.template_ids
            else:
                merged[domain.name] = domain
        domains = list(merged.values())
        seen: dict[str, str] = {}
        for domain in domains:
            kept = []
            for template_id in domain.template_ids:
                if template_id not in known:
                    evidence.append(f"invented template id {template_id!r} in {domain.name!r}")
                    round_.repairs.append(f"remove: invented id {template_id!r} from {domain.name!r}")
                elif template_id in seen:
                    where = "twice in" if seen[template_id] == domain.name else f"in {seen[template_id]!r} and"
                    evidence.append(f"template {template_id} is {where} {domain.name!r}")
                    round_.repairs.append(f"remove: duplicate {template_id} from {domain.name!r} "
                                          f"(kept in {seen[template_id]!r})")
                else:
                    seen[template_id] = domain.name
                    kept.append(template_id)
            domain.template_ids = kept
        empty = [d.name for d in domains if not d.template_ids]
        for name in empty:
            evidence.append(f"domain {name!r} is empty")
            round_.repairs.append(f"drop: empty domain {name!r}")
        domains = [d for d in domains if d.template_ids]
        missing = [t for t in known if t not in seen]
        if missing and not domains:
            evidence.append(f"{len(missing)} templates missing and no domain to put them in")
            return CheckResult("exact cover", False, evidence), domains
        for template_id in missing:
            profile = known[template_id]
            violation = f"template {template_id} ({profile.text!r}) is in no domain"
            evidence.append(violation)
            target = None
            if advisor is not None:
                answer = advisor(profile, domains, violation)
                target = answer if answer in {d.name for d in domains} else None
            how = "as the advisor answered"
            if target is None:
                target = self._similarity.nearest_domain(template_id, domains)
                how = "nearest by template text"
            next(d for d in domains if d.name == target).template_ids.append(template_id)
            round_.repairs.append(f"move: {template_id} into {target!r} ({how})")
        return CheckResult("exact cover", not evidence, evidence), domains

    def _counts(self, domain: Domain) -> tuple[int, int]:
        n_normal = sum(self._profiles[t].n_normal for t in domain.template_ids)
        n_anomaly = sum(self._profiles[t].n_anomaly for t in domain.template_ids)
        return n_normal, n_anomaly

    def _check_consistency(self, domains: list[Domain], round_: Round) -> CheckResult:
        evidence = []
        for domain in domains:
            n_normal, n_anomaly = self._counts(domain)
            kind = _kind(n_normal, n_anomaly)
            if domain.kind == PURE_ANOMALY and n_normal:
                normal = [t for t in domain.template_ids if self._profiles[t].n_normal]
                evidence.append(f"{domain.name!r} is proposed pure-anomaly but holds templates with normal labels: "
                                f"{', '.join(normal[:10])}")
            elif domain.kind == PURE_NORMAL and n_anomaly:
                anomalous = [t for t in domain.template_ids if self._profiles[t].n_anomaly]
                evidence.append(f"{domain.name!r} is proposed pure-normal but holds templates with anomaly labels: "
                                f"{', '.join(anomalous[:10])}")
            if domain.kind is not None and domain.kind != kind:
                round_.repairs.append(f"retag: {domain.name!r} from {domain.kind} to {kind} (from its labels)")
            domain.kind = kind
        return CheckResult("label consistency", not evidence, evidence)

    def _supported(self, domain: Domain) -> bool:
        n_normal, n_anomaly = self._counts(domain)
        return min(n_normal, n_anomaly) >= self.min_support

    def _check_support(self, domains: list[Domain], round_: Round, repair: bool):
        evidence = []
        weak = []
        for domain in domains:
            n_normal, n_anomaly = self._counts(domain)
            if domain.kind == UNLABELLED_DOMAIN:
                evidence.append(f"{domain.name!r} has no labelled line")
                weak.append(domain)
            elif domain.kind == MIXED and min(n_normal, n_anomaly) < self.min_support:
                evidence.append(f"mixed {domain.name!r} has {n_normal} normal and {n_anomaly} anomalous labelled lines; "
                                f"an expert needs at least {self.min_support} of each")
                weak.append(domain)
        if not weak or not repair:
            return CheckResult("support", not evidence, evidence), None
        domains = list(domains)
        for domain in weak:
            parts = {kind: [t for t in domain.template_ids if self._profiles[t].indicator == kind]
                     for kind in (PURE_NORMAL, PURE_ANOMALY, MIXED)}
            unlabelled = [t for t in domain.template_ids if t not in sum(parts.values(), [])]
            position = domains.index(domain)
            domains.remove(domain)
            pieces = []
            # Split: the pure templates need no expert; they form pure domains of their own.
            if parts[PURE_NORMAL]:
                pieces.append(Domain(domain.name, domain.description, parts[PURE_NORMAL], PURE_NORMAL))
            if parts[PURE_ANOMALY]:
                name = f"{domain.name}-failures" if parts[PURE_NORMAL] else domain.name
                pieces.append(Domain(name, domain.description, parts[PURE_ANOMALY], PURE_ANOMALY))
            rest = parts[MIXED] + unlabelled
            if rest:
                name = f"{domain.name}-mixed" if pieces else domain.name
                leftover = Domain(name, domain.description, rest, MIXED)
                if self._supported(leftover) or not [d for d in domains if d.kind == MIXED and self._supported(d)]:
                    pieces.append(leftover)
                else:
                    # Merge: templates whose lines are both normal and anomalous, too few for an expert of their own,
                    # join the most similar mixed domain that has enough support.
                    candidates = [d for d in domains if d.kind == MIXED and self._supported(d)]
                    target = next(d for d in candidates if d.name == self._similarity.nearest_domain(rest, candidates))
                    target.template_ids += rest
                    round_.repairs.append(f"merge: mixed templates {', '.join(rest[:8])} of {domain.name!r} into "
                                          f"{target.name!r} (too few labelled lines for an expert of their own)")
            if len(pieces) > 1 or (pieces and pieces[0].template_ids != domain.template_ids):
                described = ", ".join(f"{p.name!r} ({p.kind}, {len(p.template_ids)} templates)" for p in pieces)
                round_.repairs.append(f"split: {domain.name!r} into {described}")
            domains[position:position] = pieces
        return CheckResult("support", False, evidence), domains

    def _check_separability(self, domains, lines, report, round_: Round, repair: bool):
        domain_of = {t: d.name for d in domains for t in d.template_ids}
        usable = [(line.content, domain_of[line.template_id]) for line in lines if line.template_id in domain_of]
        counts = Counter(name for _, name in usable)
        if len(counts) < 2:
            report.routing_accuracy = 1.0 if usable else None
            return CheckResult("separability", True, ["fewer than two domains: nothing to separate"]), None
        # A domain with fewer labelled lines than folds cannot be cross-validated; it is left out of the estimate.
        texts = [text for text, name in usable if counts[name] >= self.cv_folds]
        targets = np.array([name for _, name in usable if counts[name] >= self.cv_folds])
        scored = Counter(targets)
        if len(scored) < 2:
            report.routing_accuracy = None
            return CheckResult("separability", True, ["too few labelled lines to cross-validate"]), None
        folds = self.cv_folds
        router = make_pipeline(
            TfidfVectorizer(token_pattern=r"[A-Za-z][A-Za-z_]+", sublinear_tf=True, min_df=1),
            LogisticRegression(max_iter=2000, C=10.0),
        )
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        predicted = cross_val_predict(router, texts, targets, cv=splitter)
        accuracy = float(np.mean(predicted == targets))
        report.routing_accuracy = accuracy
        confused = []
        for (truth, guess), n in Counter(zip(targets, predicted)).items():
            # Rates over a handful of lines are noise: a pair is named only with min_support lines behind it.
            if truth != guess and scored[truth] >= self.min_support and n / scored[truth] > self.max_confusion:
                confused.append((str(truth), str(guess), n / scored[truth]))
        confused.sort(key=lambda p: -p[2])
        report.confused_pairs = confused
        evidence = [f"routing accuracy {accuracy:.4f} over {len(texts)} labelled lines ({folds}-fold)"]
        evidence += [f"{rate:.0%} of {a!r} lines routed to {b!r}" for a, b, rate in confused]
        merges = self._safe_merges(domains, confused)
        passed = accuracy >= self.min_routing_accuracy and not merges
        if not repair or not merges:
            return CheckResult("separability", passed, evidence), None
        by_name = {d.name: d for d in domains}
        for gone_name, keep_name, rate in merges:
            keep, gone = by_name[keep_name], by_name[gone_name]
            keep.template_ids += gone.template_ids
            if gone.description and gone.description not in keep.description:
                keep.description = f"{keep.description}; {gone.description}".strip("; ")
            round_.repairs.append(f"merge: {gone_name!r} into {keep_name!r} (confused: {rate:.0%} of lines misrouted)")
        return CheckResult("separability", False, evidence), [d for d in domains if d.name not in
                                                              {g for g, _, _ in merges}]

    def _safe_merges(self, domains: list[Domain], confused) -> list[tuple[str, str, float]]:
        """Merges that cannot change a decision: two domains of the same pure kind, or a pure domain into a mixed
        one whose expert has support. A pure-normal / pure-anomaly pair stays apart (merged, it would be a mixed
        domain without support): it is reported, and the router decides between them."""
        kinds = {d.name: d for d in domains}
        merges, used = [], set()
        for a, b, rate in confused:
            if a in used or b in used:
                continue
            da, db = kinds[a], kinds[b]
            if da.kind == db.kind and da.kind != MIXED:
                merges.append((a, b, rate))
            elif db.kind == MIXED and self._supported(db):
                merges.append((a, b, rate))
            elif da.kind == MIXED and self._supported(da):
                merges.append((b, a, rate))
            else:
                continue
            used.update((a, b))
        return merges

    def _fill_table(self, domains: list[Domain], report: CertificationReport) -> None:
        report.domain_table = []
        for domain in domains:
            n_normal, n_anomaly = self._counts(domain)
            report.domain_table.append({"name": domain.name, "kind": domain.kind or _kind(n_normal, n_anomaly),
                                        "templates": len(domain.template_ids), "n_normal": n_normal,
                                        "n_anomaly": n_anomaly, "description": domain.description})


def _kind(n_normal: int, n_anomaly: int) -> str:
    if n_normal and n_anomaly:
        return MIXED
    if n_anomaly:
        return PURE_ANOMALY
    if n_normal:
        return PURE_NORMAL
    return UNLABELLED_DOMAIN


class _TextSimilarity:
    """Template-text similarity (TF-IDF over words): deterministic and cheap, for placing templates."""

    def __init__(self, profiles: Sequence[TemplateProfile]):
        self._index = {p.template_id: i for i, p in enumerate(profiles)}
        texts = [p.text + " " + " ".join(p.examples[:1]) for p in profiles] or [""]
        self._vectors = TfidfVectorizer(token_pattern=r"[A-Za-z][A-Za-z_]+").fit_transform(texts) \
            if any(t.strip() for t in texts) else None

    def nearest_domain(self, template_ids: str | list[str], domains: list[Domain]) -> str:
        ids = [template_ids] if isinstance(template_ids, str) else template_ids
        if self._vectors is None or not domains:
            return domains[0].name
        query = np.asarray(self._vectors[[self._index[t] for t in ids]].mean(axis=0))
        best, best_score = domains[0].name, -1.0
        for domain in domains:
            members = [self._index[t] for t in domain.template_ids if t in self._index and t not in ids]
            if not members:
                continue
            centroid = np.asarray(self._vectors[members].mean(axis=0))
            score = float(cosine_similarity(query, centroid)[0, 0])
            if score > best_score:
                best, best_score = domain.name, score
        return best
