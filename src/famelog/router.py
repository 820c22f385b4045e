"""The router: a message's text → failure domain, with a confidence.

Reads only text (masked message plus context fields such as component and level), never a template id, so lines of
templates never seen in training are routed too. TF-IDF over words and a multinomial logistic regression: thousands
of lines per second, and its learned state is a few arrays saved without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

TOKEN_PATTERN = r"[A-Za-z][A-Za-z_]+"


class Router:
    """``fit(texts, domains)`` then ``predict(texts)`` → (domain per text, confidence in [0, 1] per text).

    The confidence is the logistic regression's probability of the chosen domain."""

    def __init__(self, C: float = 10.0, max_iter: int = 2000):
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C = C
        self.max_iter = max_iter

    def fit(self, texts: Sequence[str], domains: Sequence[str]) -> Router:
        if len(texts) != len(domains) or not texts:
            raise ValueError("the router needs as many domains as texts, and at least one of each")
        self.vectorizer_ = TfidfVectorizer(token_pattern=TOKEN_PATTERN, sublinear_tf=True)
        features = self.vectorizer_.fit_transform(texts)
        self.classes_ = np.array(sorted(set(domains)))
        if len(self.classes_) == 1:
            self.classifier_ = None  # one domain: every text goes there
            return self
        self.classifier_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(features, list(domains))
        return self

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        if not texts:
            return [], np.zeros(0)
        if self.classifier_ is None:
            return [str(self.classes_[0])] * len(texts), np.ones(len(texts))
        probabilities = self.classifier_.predict_proba(self.vectorizer_.transform(texts))
        best = probabilities.argmax(axis=1)
        return [str(self.classifier_.classes_[i]) for i in best], probabilities[np.arange(len(texts)), best]

    # -- persistence: vocabulary as JSON, arrays as safetensors ------------------------------------------------------

    def save(self, directory: str | Path) -> list[str]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(index) for term, index in self.vectorizer_.vocabulary_.items()}
        meta = {"C": self.C, "max_iter": self.max_iter, "classes": [str(c) for c in self.classes_],
                "vocabulary": vocabulary}
        (directory / "router.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        arrays = {"idf": self.vectorizer_.idf_.astype(np.float64)}
        if self.classifier_ is not None:
            arrays["coef"] = self.classifier_.coef_
            arrays["intercept"] = self.classifier_.intercept_
        # safetensors writes the raw buffer: a Fortran-ordered coef_ would come back transposed in memory.
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / "router.safetensors"))
        return ["router.json", "router.safetensors"]

    @classmethod
    def load(cls, directory: str | Path) -> Router:
        directory = Path(directory)
        meta = json.loads((directory / "router.json").read_text(encoding="utf-8"))
        arrays = load_file(str(directory / "router.safetensors"))
        router = cls(C=meta["C"], max_iter=meta["max_iter"])
        router.vectorizer_ = TfidfVectorizer(token_pattern=TOKEN_PATTERN, sublinear_tf=True)
        router.vectorizer_.vocabulary_ = meta["vocabulary"]
        router.vectorizer_.idf_ = arrays["idf"]
        router.classes_ = np.array(meta["classes"])
        if "coef" in arrays:
            classifier = LogisticRegression(C=router.C, max_iter=router.max_iter)
            classifier.classes_ = router.classes_
            classifier.coef_ = arrays["coef"]
            classifier.intercept_ = arrays["intercept"]
            router.classifier_ = classifier
        else:
            router.classifier_ = None
        return router
