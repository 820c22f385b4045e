"""Baselines, fitted on exactly the K-shot lines famelog gets and scored on the same test lines.

Each is an estimator: ``fit(train)`` with a :class:`SplitData`, then ``predict(test)`` → one bool per test line
(True = anomaly). None of them reads a test line's label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from famelog.domains.partition import Partition
from famelog.io import Record
from famelog.labels import ANOMALY
from famelog.model import capped_per_template, line_text
from famelog.router import TOKEN_PATTERN, Router
from famelog.templates import FrozenMatcher, Match, TemplateSet


@dataclass
class SplitData:
    """One chronological split: training lines with their learned templates and K-shot labels, test lines with
    their matches against the frozen templates (``Match.unseen`` marks a template never seen in training)."""

    train: list[Record]
    template_set: TemplateSet
    template_ids: list[str]
    labels: dict[int, str]
    test: list[Record]
    test_matches: list[Match]

    @property
    def labelled(self) -> list[int]:
        return sorted(self.labels)


class TemplateMajority:
    """Each learned template takes the majority of its K-shot labels (a tie counts as anomaly); a line of an unseen
    template gets ``unseen_anomaly``."""

    def __init__(self, unseen_anomaly: bool = False):
        self.unseen_anomaly = unseen_anomaly

    def fit(self, data: SplitData) -> TemplateMajority:
        votes: dict[str, Counter] = {}
        for i, label in data.labels.items():
            votes.setdefault(data.template_ids[i], Counter())[label == ANOMALY] += 1
        self.majority_ = {t: c[True] >= c[False] for t, c in votes.items()}
        return self

    def predict(self, data: SplitData) -> np.ndarray:
        return np.array([self.unseen_anomaly if m.unseen else self.majority_.get(m.template_id, self.unseen_anomaly)
                         for m in data.test_matches], dtype=bool)


class _TextClassifier:
    """TF-IDF + class-balanced logistic regression over what famelog's experts read; one class → that class."""

    def __init__(self, C: float = 10.0):
        self.C = C

    def fit(self, texts: Sequence[str], y: Sequence[bool]) -> _TextClassifier:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype=bool)
        self.constant_ = bool(y[0]) if len(set(y.tolist())) == 1 else None
        if self.constant_ is None:
            self.vectorizer_ = TfidfVectorizer(token_pattern=TOKEN_PATTERN, sublinear_tf=True)
            self.classifier_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(
                self.vectorizer_.fit_transform(texts), y)
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if self.constant_ is not None:
            return np.full(len(texts), self.constant_)
        return self.classifier_.predict(self.vectorizer_.transform(texts)).astype(bool) if len(texts) else \
            np.zeros(0, dtype=bool)


class GlobalTfidf:
    """One TF-IDF + logistic regression on all K-shot lines."""

    def fit(self, data: SplitData) -> GlobalTfidf:
        self.classifier_ = _TextClassifier().fit([line_text(data.train[i]) for i in data.labelled],
                                                 [data.labels[i] == ANOMALY for i in data.labelled])
        return self

    def predict(self, data: SplitData) -> np.ndarray:
        return self.classifier_.predict([line_text(r) for r in data.test])


class GroupedTfidf:
    """One TF-IDF + logistic regression per failure domain of ``partition``: a learned template's line goes to its
    template's domain, an unseen one is routed by its masked text (famelog's router)."""

    def __init__(self, partition: Partition):
        self.partition = partition

    def fit(self, data: SplitData) -> GroupedTfidf:
        self.domain_of_ = self.partition.domain_of()
        self.matcher_ = FrozenMatcher(data.template_set)
        domains = [self.domain_of_[data.template_ids[i]] for i in data.labelled]
        self.router_ = Router().fit([line_text(data.train[i], content=self.matcher_.mask(data.train[i].content))
                                     for i in data.labelled], domains)
        self.classifiers_ = {}
        for domain in sorted(set(domains)):
            chosen = [i for i, d in zip(data.labelled, domains) if d == domain]
            self.classifiers_[domain] = _TextClassifier().fit([line_text(data.train[i]) for i in chosen],
                                                              [data.labels[i] == ANOMALY for i in chosen])
        return self

    def predict(self, data: SplitData) -> np.ndarray:
        unseen = [i for i, m in enumerate(data.test_matches) if m.unseen]
        routed, _ = self.router_.predict([line_text(data.test[i], content=self.matcher_.mask(data.test[i].content))
                                          for i in unseen])
        domains = [self.domain_of_.get(m.template_id) for m in data.test_matches]
        for i, domain in zip(unseen, routed):
            domains[i] = domain
        predicted = np.zeros(len(data.test), dtype=bool)
        for domain in set(domains):
            rows = [i for i, d in enumerate(domains) if d == domain]
            predicted[rows] = self.classifiers_[domain].predict([line_text(data.test[i]) for i in rows])
        return predicted


class GlobalMiniLM:
    """One MiniLM classifier on the K-shot lines (at most ``per_template`` per template and label, as famelog's
    novelty expert), calibrated on a stratified share of them; no templates, no routing: it reads every line."""

    def __init__(self, epochs: int = 3, per_template: int = 30, seed: int = 0, encoder: str = "minilm"):
        self.epochs = epochs
        self.per_template = per_template
        self.seed = seed
        self.encoder = encoder

    def fit(self, data: SplitData) -> GlobalMiniLM:
        from famelog.experts import BertExpert

        chosen = capped_per_template(data.labelled, data.template_ids, data.labels, self.per_template)
        y = [data.labels[i] == ANOMALY for i in chosen]
        self.constant_ = y[0] if len(set(y)) == 1 else None
        if self.constant_ is None:
            self.expert_ = BertExpert(encoder=self.encoder, epochs=self.epochs, seed=self.seed).fit(
                [line_text(data.train[i]) for i in chosen], y)
        return self

    def predict(self, data: SplitData) -> np.ndarray:
        if self.constant_ is not None:
            return np.full(len(data.test), self.constant_)
        texts = [line_text(r) for r in data.test]
        # Scored once per distinct text (as famelog does for unseen lines): the same answer, far less CPU.
        distinct = sorted(set(texts))
        scores = dict(zip(distinct, self.expert_.predict_proba(distinct)))
        return np.array([scores[t] >= self.expert_.threshold_ for t in texts], dtype=bool)
