import json

import pytest

from conftest import need_data, BGL_SAMPLE
from famelog.io import chronological_split, read_records
from famelog.templates import FrozenMatcher, MatcherConfig, TemplateLearner, TemplateSet


def learn(contents, **config):
    return TemplateLearner(MatcherConfig(**config)).fit(contents)


@pytest.mark.parametrize("content, masked", [
    ("ciod: Error reading message prefix on CioStream socket to 172.16.96.116:33561, Link has been severed",
     "ciod: Error reading message prefix on CioStream socket to <IP>, Link has been severed"),
    ("Power Good signal deactivated: R73-M0-N2. A service action may be required.",
     "Power Good signal deactivated: <NODE>. A service action may be required."),
    ("node R02-M1-N0-C:J12-U11 and R21-M0-NC-I:J18-U01 down", "node <NODE> and <NODE> down"),
    ("link card R63-M0-L1-U19-A in R73-M1, R10-M0-Ne-C:J05-U01.", "link card <NODE> in <NODE>, <NODE>."),
    ("machine check interrupt (bit=0x1d): L2 dcache", "machine check interrupt (bit=<HEX>): L2 dcache"),
    ("softheader=00000000 003f0000 counter 16772817 x", "softheader=<NUM> <NUM> counter <NUM> x"),
    ("ciod: Error loading /bgl/apps/swl/Ex_1.rts: not found", "ciod: Error loading <PATH>: not found"),
    ("generating core.2275", "generating core.<NUM>"),
    ("deadface accepted", "deadface accepted"),
])
def test_masking_suits_system_logs(content, masked):
    assert MatcherConfig().new_masker().mask(content) == masked


def test_learn_then_freeze_marks_only_new_failure_types_unseen(synth_log):
    records = list(read_records(synth_log, "bgl"))
    train, test = chronological_split(records, 0.7)
    learner = learn([r.content for r in train])
    matcher = FrozenMatcher(learner.template_set_)
    matches = [matcher.match(r.content) for r in test]
    unseen_texts = {r.content.split(" ")[0] for r, m in zip(test, matches) if m.unseen}
    # The generator's late-only failure types are all new; only anomalies are unseen.
    assert {"Error", "fsck:", "Power"} <= unseen_texts
    assert all(r.is_anomaly for r, m in zip(test, matches) if m.unseen)
    late = [m for r, m in zip(test, matches) if r.content.startswith("Error receiving packet on tree network")]
    assert late and all(m.unseen for m in late)
    # Every training line matches a learned template.
    assert not any(matcher.match(r.content).unseen for r in train)


def test_matching_never_changes_the_learned_templates(synth_log):
    records = list(read_records(synth_log, "bgl"))
    learner = learn([r.content for r in records[:3000]])
    before = json.dumps(learner.template_set_.to_json())
    matcher = FrozenMatcher(learner.template_set_)
    for r in records[3000:]:
        matcher.match(r.content)
    assert json.dumps(learner.template_set_.to_json()) == before


def test_unseen_lines_group_under_one_provisional_template():
    learner = learn(["disk sda ok", "disk sdb ok", "fan 1 speed 3000 rpm"])
    matcher = FrozenMatcher(learner.template_set_)
    first = matcher.match("kernel panic: Out of memory")
    second = matcher.match("kernel panic: Out of memory")
    third = matcher.match("kernel panic: Fatal exception interrupt")
    other = matcher.match("something else entirely different here now")
    assert first.unseen and first.template_id.startswith("N")
    assert first.template_id == second.template_id == third.template_id
    assert other.template_id != first.template_id
    seen = matcher.match("fan 2 speed 2950 rpm")
    assert not seen.unseen and seen.template == "fan <NUM> speed <NUM> rpm"


def test_json_round_trip_gives_identical_matches(tmp_path, synth_log):
    records = list(read_records(synth_log, "bgl"))
    learner = learn([r.content for r in records[:4000]])
    path = tmp_path / "templates.json"
    learner.template_set_.save(path)
    text = path.read_text()
    assert "py/object" not in text  # not a jsonpickle snapshot
    loaded = TemplateSet.load(path)
    assert loaded.to_json() == learner.template_set_.to_json()
    a, b = FrozenMatcher(learner.template_set_), FrozenMatcher(loaded)
    contents = [r.content for r in records]
    assert [a.match(c) for c in contents] == [b.match(c) for c in contents]


def test_json_round_trip_on_real_bgl(tmp_path):
    records = list(read_records(need_data(BGL_SAMPLE), "bgl"))
    train, test = chronological_split(records, 0.8)
    learner = learn([r.content for r in train])
    learner.template_set_.save(tmp_path / "t.json")
    a, b = FrozenMatcher(learner.template_set_), FrozenMatcher(TemplateSet.load(tmp_path / "t.json"))
    assert [a.match(r.content) for r in test] == [b.match(r.content) for r in test]


def test_bgl_late_failure_types_are_unseen():
    """Acceptance: learning on the first 80% of the BGL sample leaves the late failure types unseen."""
    records = list(read_records(need_data(BGL_SAMPLE), "bgl"))
    train, test = chronological_split(records, 0.8)
    learner = learn([r.content for r in train])
    matcher = FrozenMatcher(learner.template_set_)
    matches = [matcher.match(r.content) for r in test]
    tree = [m for r, m in zip(test, matches) if r.content.startswith("Error receiving packet on tree network")]
    assert len(tree) == 120 and all(m.unseen for m in tree)
    assert len({m.template_id for m in tree}) == 1
    unseen_anomalies = sum(1 for r, m in zip(test, matches) if m.unseen and r.is_anomaly)
    assert sum(r.is_anomaly for r in test) == 439
    assert 140 <= unseen_anomalies <= 160  # SOURCES.md: 149 with Drain3 and digits masked
    assert 100 <= len(learner.template_set_.templates) <= 300
    # Lines of learned templates still match: the common messages are not unseen.
    assert sum(m.unseen for m in matches) < 0.06 * len(test)


def test_bad_template_files_are_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"py/object": "os.system"}')
    with pytest.raises(ValueError, match="not a famelog template file"):
        TemplateSet.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read template file"):
        TemplateSet.load(path)
    path.write_text('{"format": "famelog-templates", "version": 1, "config": {"depth": 4}, "templates": []}')
    with pytest.raises(ValueError, match="malformed template file"):
        TemplateSet.load(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 2}, "depth"), ({"sim_th": 0}, "sim_th"), ({"max_children": 1}, "max_children")])
def test_config_is_validated_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MatcherConfig(**kwargs)


@pytest.mark.parametrize("cache_size", [0, 3])
def test_caches_never_change_a_match(synth_log, cache_size):
    records = list(read_records(synth_log, "bgl"))
    template_set = learn([r.content for r in records[:3000]]).template_set_
    contents = [r.content for r in records] * 2
    cached, small = FrozenMatcher(template_set), FrozenMatcher(template_set, cache_size=cache_size)
    plain = [cached.match(c) for c in contents]
    assert [small.match(c) for c in contents] == plain
    assert any(m.unseen for m in plain) and not all(m.unseen for m in plain)
    with pytest.raises(ValueError, match="cache_size"):
        FrozenMatcher(template_set, cache_size=-1)


def test_cli_templates_on_bgl_prints_learned_and_unseen_counts(tmp_path):
    import re

    from conftest import run_cli

    result = run_cli("templates", need_data(BGL_SAMPLE), "--format", "bgl", "--train-fraction", "0.8",
                     "--save", tmp_path / "t.json")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    learned = int(re.search(r"templates learned: (\d+) from 55,683 lines", text).group(1))
    assert learned == len(TemplateSet.load(tmp_path / "t.json").templates)
    unseen_anomalies = int(re.search(r"held-out anomalies: 439; from unseen templates: (\d+)", text).group(1))
    assert 140 <= unseen_anomalies <= 160
    assert "Error receiving packet on tree network" in text
