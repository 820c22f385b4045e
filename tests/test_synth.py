from collections import Counter

from conftest import run_cli
from famelog import labels
from famelog.io import LogFormat, chronological_split, read_records
from famelog.synth import generate
from famelog.templates import MatcherConfig, TemplateLearner


def test_deterministic_per_seed():
    assert list(generate(500, seed=3)) == list(generate(500, seed=3))
    assert list(generate(500, seed=3)) != list(generate(500, seed=4))


def test_lines_fit_the_bgl_format_and_are_time_ordered():
    fmt = LogFormat("bgl")
    parsed = [fmt.parse(line) for line in generate(3000, seed=1)]
    assert not any(malformed for *_, malformed in parsed)
    epochs = [int(fields["Epoch"]) for _, fields, _, _ in parsed]
    assert epochs == sorted(epochs)
    share = sum(label != "-" for label, *_ in parsed) / len(parsed)
    assert 0.03 < share < 0.2


def test_new_failure_types_only_late(tmp_path):
    lines = list(generate(8000, seed=2, new_failures_from=0.75))
    late_only = ("Error receiving packet on tree network", "fsck: block bitmap", "Power Good signal deactivated")
    early, late = lines[:6000], lines[6000:]
    assert not any(text in line for line in early for text in late_only)
    for text in late_only:
        assert any(text in line for line in late), text


def test_has_pure_and_mixed_templates(tmp_path):
    path = tmp_path / "s.log"
    path.write_text("\n".join(generate(8000, seed=5)) + "\n")
    records = list(read_records(path, "bgl"))
    train, _ = chronological_split(records, 0.75)
    learner = TemplateLearner(MatcherConfig()).fit(r.content for r in train)
    every_line = {i: ("anomaly" if r.is_anomaly else "normal") for i, r in enumerate(train)}
    kinds = Counter(i.kind for i in labels.template_indicators(
        learner.assignments_, [r.content for r in train], every_line).values())
    assert kinds[labels.PURE_NORMAL] >= 5 and kinds[labels.PURE_ANOMALY] >= 3 and kinds[labels.MIXED] >= 3


def test_cli_synth_writes_gzip(tmp_path):
    out = tmp_path / "demo.log.gz"
    result = run_cli("synth", "--lines", "1000", "--out", out)
    assert result.returncode == 0, result.stderr
    assert len(list(read_records(out, "bgl"))) == 1000
    assert b"wrote 1,000 lines" in result.stderr
