import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import run_cli
from famelog.domains.certify import Certifier
from famelog.domains.llm import OpenAIBackend
from famelog.domains.partition import Domain, Partition, PartitionError
from famelog.domains.profile import TemplateProfile
from famelog.domains.propose import EmbeddingProposer, LLMProposer
from famelog.labels import LabelledLine, MIXED, PURE_ANOMALY, PURE_NORMAL


@pytest.fixture(scope="module")
def embedding_proposal(training):
    return EmbeddingProposer().propose(training[0])


def ids_of(partition):
    return sorted(t for d in partition.domains for t in d.template_ids)


def test_embedding_proposer_covers_every_template_once_and_is_deterministic(training, embedding_proposal):
    profiles, _ = training
    assert ids_of(embedding_proposal) == sorted(p.template_id for p in profiles)
    assert len(embedding_proposal.domains) >= 3
    assert embedding_proposal.provenance["backend"] == "embedding"
    again = EmbeddingProposer().propose(profiles)
    assert again.to_json()["domains"] == embedding_proposal.to_json()["domains"]


def test_embedding_proposal_certifies(training, embedding_proposal):
    profiles, lines = training
    certified, report = Certifier().certify(embedding_proposal, profiles, lines)
    assert certified is not None, report.to_markdown()
    assert certified.certified and ids_of(certified) == sorted(p.template_id for p in profiles)
    assert {d.kind for d in certified.domains} <= {PURE_NORMAL, PURE_ANOMALY, MIXED}
    for domain in certified.domains:
        if domain.kind == MIXED:
            n_normal = sum(p.n_normal for p in profiles if p.template_id in domain.template_ids)
            n_anomaly = sum(p.n_anomaly for p in profiles if p.template_id in domain.template_ids)
            assert min(n_normal, n_anomaly) >= 8
    assert report.routing_accuracy > 0.9
    assert "CERTIFIED" in report.to_markdown()


def _proposal(profiles, n=3):
    """A valid raw proposal: templates dealt round-robin into n domains."""
    domains = [Domain(f"d{i}", f"domain {i}", []) for i in range(n)]
    for position, profile in enumerate(profiles):
        domains[position % n].template_ids.append(profile.template_id)
    return Partition(domains)


def _evidence(report):
    return [e for r in report.rounds for c in r.checks for e in c.evidence]


def _repairs(report):
    return [x for r in report.rounds for x in r.repairs]


def test_invented_ids_are_removed(training):
    profiles, lines = training
    proposal = _proposal(profiles)
    proposal.domains[0].template_ids.append("T999")
    certified, report = Certifier(min_routing_accuracy=0.0, max_confusion=1.0).certify(proposal, profiles, lines)
    assert "invented template id 'T999' in 'd0'" in _evidence(report)
    assert certified is not None and "T999" not in ids_of(certified)


def test_duplicates_are_kept_once(training):
    profiles, lines = training
    proposal = _proposal(profiles)
    twin = proposal.domains[0].template_ids[0]
    proposal.domains[1].template_ids.append(twin)
    certified, report = Certifier(min_routing_accuracy=0.0, max_confusion=1.0).certify(proposal, profiles, lines)
    assert f"template {twin} is in 'd0' and 'd1'" in _evidence(report)
    assert ids_of(certified).count(twin) == 1


def test_missing_templates_are_moved_to_the_nearest_domain(training):
    profiles, lines = training
    proposal = _proposal(profiles)
    gone = proposal.domains[2].template_ids.pop()
    certified, report = Certifier(min_routing_accuracy=0.0, max_confusion=1.0).certify(proposal, profiles, lines)
    assert any(e.startswith(f"template {gone} (") and e.endswith("is in no domain") for e in _evidence(report))
    assert any(r.startswith(f"move: {gone} into") for r in _repairs(report))
    assert ids_of(certified) == sorted(p.template_id for p in profiles)


def test_advisor_answer_is_used_for_a_missing_template(training):
    profiles, lines = training
    proposal = _proposal(profiles)
    gone = proposal.domains[0].template_ids.pop()
    asked = []

    def advisor(profile, domains, violation):
        asked.append((profile.template_id, violation))
        return "d2"

    certified, report = Certifier(min_routing_accuracy=0.0, max_confusion=1.0).certify(
        proposal, profiles, lines, advisor=advisor)
    assert asked and asked[0][0] == gone and "is in no domain" in asked[0][1]
    assert gone in certified.by_name()["d2"].template_ids


def test_pure_anomaly_domain_holding_a_normal_template_is_caught(training):
    profiles, lines = training
    anomalous = [p.template_id for p in profiles if p.indicator == PURE_ANOMALY]
    normal = [p.template_id for p in profiles if p.indicator == PURE_NORMAL]
    rest = [p.template_id for p in profiles if p.template_id not in anomalous[:2] + normal[:1]]
    proposal = Partition([Domain("failures", "", anomalous[:2] + normal[:1], PURE_ANOMALY),
                          Domain("rest", "", rest)])
    _, report = Certifier(min_routing_accuracy=0.0, max_confusion=1.0).certify(proposal, profiles, lines)
    first = report.rounds[0]
    consistency = next(c for c in first.checks if c.name == "label consistency")
    assert not consistency.passed
    assert consistency.evidence == [f"'failures' is proposed pure-anomaly but holds templates with normal labels: "
                                    f"{normal[0]}"]


def test_mixed_domain_with_too_few_of_one_class_is_split(training):
    profiles, lines = training
    small_anomaly = min((p for p in profiles if p.indicator == PURE_ANOMALY), key=lambda p: p.n_anomaly)
    normal = next(p for p in profiles if p.indicator == PURE_NORMAL)
    thin = Domain("thin", "", [normal.template_id, small_anomaly.template_id])
    others = [p.template_id for p in profiles if p.template_id not in thin.template_ids]
    proposal = Partition([thin, Domain("rest", "", others)])
    certifier = Certifier(min_support=small_anomaly.n_anomaly + 1, min_routing_accuracy=0.0, max_confusion=1.0)
    certified, report = certifier.certify(proposal, profiles, lines)
    assert any(e.startswith("mixed 'thin' has") and "an expert needs at least" in e for e in _evidence(report))
    assert any(r.startswith("split: 'thin'") for r in _repairs(report))
    kinds = {d.name: d.kind for d in certified.domains}
    assert kinds["thin"] == PURE_NORMAL and kinds["thin-failures"] == PURE_ANOMALY


def test_confused_domains_are_merged():
    profiles = [TemplateProfile("T1", "link down on port <NUM>", 50, MIXED, 40, 10, ()),
                TemplateProfile("T2", "link down on port <NUM> again", 50, MIXED, 40, 10, ()),
                TemplateProfile("T3", "disk sda replaced", 50, PURE_NORMAL, 50, 0, ())]
    lines = []
    for template_id in ("T1", "T2"):
        lines += [LabelledLine("link down on port", template_id, "normal")] * 40
        lines += [LabelledLine("link down on port", template_id, "anomaly")] * 10
    lines += [LabelledLine("disk sda replaced", "T3", "normal")] * 50
    proposal = Partition([Domain("a", "", ["T1"]), Domain("b", "", ["T2"]), Domain("c", "", ["T3"])])
    certified, report = Certifier().certify(proposal, profiles, lines)
    evidence = _evidence(report)
    assert any("of 'a' lines routed to 'b'" in e or "of 'b' lines routed to 'a'" in e for e in evidence)
    assert certified is not None and len(certified.domains) == 2


def test_unrepairable_proposal_is_refused_with_the_reason(training):
    profiles, lines = training
    proposal = _proposal(profiles)
    proposal.domains[0].template_ids.clear()
    proposal.domains[1].template_ids.clear()
    proposal.domains[2].template_ids.clear()
    certified, report = Certifier().certify(proposal, profiles, lines)
    assert certified is None and report.outcome == "refused"
    assert report.reason.startswith("refused:")


def test_last_round_failure_is_refused(training):
    profiles, lines = training
    proposal = _proposal(profiles)
    proposal.domains[0].template_ids.pop()
    certified, report = Certifier(max_rounds=1).certify(proposal, profiles, lines)
    assert certified is None
    assert "after 1 round(s) these checks still fail: exact cover" in report.reason


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"domains": "memory"}', 'missing "domains" list'),
    ('{"domains": [{"templates": ["T1"]}]}', "domain #1 has no name"),
    ('{"domains": [{"name": "m", "templates": "T1"}]}', "has no \\\"templates\\\" list"),
    ("[1, 2]", "a partition is a JSON object"),
])
def test_malformed_proposals_are_rejected(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PartitionError, match=message):
        Partition.load(path)


def test_a_10_mb_answer_is_rejected(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text('{"domains": [{"name": "m", "templates": ["' + "T1\", \"" * 1_700_000 + 'T2"]}]}')
    assert path.stat().st_size > 10_000_000
    with pytest.raises(PartitionError, match="too large for a partition"):
        Partition.load(path)


class ScriptedLLM:
    """A real HTTP server on 127.0.0.1 that plays a small LLM: names by keyword, assigns by keyword, and sends
    garbage for one template so the fallback path runs."""

    def __init__(self):
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                server.calls += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                choices = body.get("guided_choice")
                if choices:
                    template = prompt.split("Log template: ", 1)[1].split("\n", 1)[0]
                    if "rpm" in template:
                        answer = "I think it is the cooling domain!"  # not a choice: must fall back
                    else:
                        answer = next((c for c in choices if c[:4] in template.lower()), choices[0])
                elif "Name their failure domain" in prompt:
                    answer = "memory" if "ddr" in prompt else ("network" if "link" in prompt else "hardware")
                else:
                    answer = "Failures of one subsystem."
                payload = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def test_llm_proposer_protocol_provenance_and_cache(training, tmp_path, monkeypatch):
    profiles, lines = training
    monkeypatch.setenv("FAMELOG_LLM_API_KEY", "sk-secret-value")
    llm = ScriptedLLM()
    try:
        proposer = LLMProposer(OpenAIBackend(llm.url, "scripted", constraint="guided"), cache_dir=tmp_path)
        partition = proposer.propose(profiles)
        provenance = partition.provenance
        assert ids_of(partition) == sorted(p.template_id for p in profiles)
        steps = [c["step"] for c in provenance["calls"]]
        assert steps.count("assign") == len(profiles)
        assert provenance["llm_calls"] == len(steps) == llm.calls
        assert provenance["model"] == "scripted" and provenance["protocol"].startswith("discover-name-assign")
        assert all("prompt" in c and ("answer" in c or "error" in c) for c in provenance["calls"])
        assert provenance["assign_fallbacks"] == sum(1 for p in profiles if "rpm" in p.text) >= 1
        assert set(d.name for d in partition.domains) <= {"memory", "network", "hardware"}
        # the same input again: served from the cache, no new call
        calls_before = llm.calls
        again = proposer.propose(profiles)
        assert llm.calls == calls_before and "cached_from" in again.provenance
        assert again.to_json()["domains"] == partition.to_json()["domains"]
        assert not any("sk-secret-value" in p.read_text() for p in tmp_path.iterdir())
        certified, report = Certifier().certify(partition, profiles, lines, advisor=proposer.advisor())
        assert certified is not None, report.to_markdown()
    finally:
        llm.httpd.shutdown()


def test_cli_propose_certify_show_with_embeddings(tmp_path, synth_log):
    proposal, partition = tmp_path / "proposal.json", tmp_path / "partition.json"
    result = run_cli("domains", "propose", synth_log, "--format", "bgl", "--train-fraction", "0.8",
                     "--backend", "embedding", "--out", proposal)
    assert result.returncode == 0, result.stderr
    assert b"proposed" in result.stdout and b"0 LLM calls" in result.stdout
    result = run_cli("domains", "certify", proposal, synth_log, "--format", "bgl", "--train-fraction", "0.8",
                     "--out", partition)
    assert result.returncode == 0, result.stderr
    assert Partition.load(partition).certified
    assert (tmp_path / "partition.report.md").read_text().startswith("# Certification report: CERTIFIED")
    result = run_cli("domains", "show", partition)
    assert result.returncode == 0 and b"(certified)" in result.stdout
    table = Partition.load(partition).provenance["certification"]["domains"]
    assert all(str(row["n_normal"]).encode() in result.stdout for row in table)


def test_cli_refusal_and_bad_model_are_one_line_errors(tmp_path, synth_log):
    bad = tmp_path / "bad.json"
    bad.write_text('{"domains": []}')
    result = run_cli("domains", "certify", bad, synth_log, "--format", "bgl", "--out", tmp_path / "p.json")
    assert result.returncode == 2 and b"refused" in result.stderr and b"Traceback" not in result.stderr
    result = run_cli("llm", "fetch", "gpt-17")
    assert result.returncode == 2 and b"unknown model 'gpt-17'" in result.stderr
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 not a model")
    result = run_cli("llm", "fetch", "--gguf", tmp_path / "fake.gguf")
    assert result.returncode == 2 and b"not a GGUF file" in result.stderr
