import gzip

import pytest

from conftest import BGL_2K, BGL_SAMPLE, THUNDERBIRD, need_data, run_cli
from famelog.io import LogFormat, LogFormatError, LogReadError, chronological_split, read_records


def test_bgl_real_lines_fields_content_and_label_apart():
    records = list(read_records(need_data(BGL_SAMPLE), "bgl"))
    assert len(records) == 69_604
    assert sum(r.is_anomaly for r in records) == 5_239
    assert not any(r.malformed for r in records)
    first = records[0]
    assert first.line == 1
    assert first.label == "-"
    assert first.fields["Node"] == "R02-M1-N0-C:J12-U11"
    assert first.fields["Level"] == "INFO"
    assert first.content == "instruction cache parity error corrected"
    assert "Label" not in first.fields
    # Some BGL lines carry no message at all: they fit the format with empty content.
    assert any(r.content == "" for r in records)
    assert [r.line for r in records[:5]] == [1, 2, 3, 4, 5]


def test_label_token_never_reaches_fields_or_content(tmp_path, bgl_lines):
    """Flipping every label token changes nothing but the label."""
    sample = bgl_lines[::50]
    flipped = [("APPSEV" if line.startswith("- ") else "-") + line[line.index(" "):] for line in sample]
    (tmp_path / "a.log").write_text("\n".join(sample) + "\n")
    (tmp_path / "b.log").write_text("\n".join(flipped) + "\n")
    original = list(read_records(tmp_path / "a.log", "bgl"))
    changed = list(read_records(tmp_path / "b.log", "bgl"))
    assert len(original) == len(changed) == len(sample)
    for a, b in zip(original, changed):
        assert (a.content, a.fields, a.malformed) == (b.content, b.fields, b.malformed)
        assert a.is_anomaly != b.is_anomaly


def test_thunderbird_real_lines():
    records = list(read_records(need_data(THUNDERBIRD), "thunderbird"))
    assert len(records) == 19_350
    assert sum(r.is_anomaly for r in records) == 715
    assert not any(r.malformed for r in records)
    first = records[0]
    assert first.fields["User"] == "aadmin1"
    assert first.fields["Location"] == "src@aadmin1"
    assert first.content.startswith("sshd[29997]: Accepted publickey for root")


def test_crlf_lines_lose_their_carriage_return():
    raw = gzip.open(need_data(BGL_2K)).read()
    assert b"\r\n" in raw
    records = list(read_records(BGL_2K, "bgl"))
    assert len(records) == 2000
    assert not any("\r" in r.content or any("\r" in v for v in r.fields.values()) for r in records)
    assert sum(r.is_anomaly for r in records) == 143


def test_adversarial_bytes_one_record_per_line(tmp_path):
    long_line = b"- 1 2005.06.03 N 2005-06-03 N RAS KERNEL INFO " + b"x" * 1_000_000
    lines = [
        b"- 1117838579 2005.06.03 R02 2005-06-03-15.42.59.413771 R02 RAS KERNEL INFO caf\xe9 \xff\xfe bytes",
        b"",
        b"not a bgl line",
        long_line,
        b"- 1 2 3 4 5 6 7 8 tab\tinside\x00nul",
        b"   ",
    ]
    path = tmp_path / "bad.log"
    path.write_bytes(b"\r\n".join(lines))  # no final newline on purpose
    records = list(read_records(path, "bgl"))
    assert [r.line for r in records] == [1, 2, 3, 4, 5, 6]
    assert "caf\ufffd \ufffd\ufffd bytes" == records[0].content
    assert records[1].malformed and records[1].content == ""
    assert records[2].malformed and records[2].content == "not a bgl line" and records[2].label is None
    assert not records[3].malformed and len(records[3].content) == 1_000_000
    assert records[4].content == "tab\tinside\x00nul"
    assert records[5].malformed


def test_raw_format_keeps_whole_line_and_has_no_label(tmp_path):
    path = tmp_path / "raw.log"
    path.write_text("- looks like a label\n\nplain\n")
    records = list(read_records(path, "raw"))
    assert [r.content for r in records] == ["- looks like a label", "", "plain"]
    assert all(r.label is None and r.is_anomaly is None and not r.malformed for r in records)


def test_several_files_plain_and_gzip_keep_order(tmp_path):
    (tmp_path / "a.log").write_text("one\ntwo\n")
    with gzip.open(tmp_path / "b.log.gz", "wt") as handle:
        handle.write("three\n")
    # gzip is detected by content, not by name
    with gzip.open(tmp_path / "c.txt", "wt") as handle:
        handle.write("four\n")
    records = list(read_records([tmp_path / "a.log", tmp_path / "b.log.gz", tmp_path / "c.txt"]))
    assert [(r.content, r.line) for r in records] == [("one", 1), ("two", 2), ("three", 1), ("four", 1)]
    assert records[2].source.endswith("b.log.gz")


def test_truncated_gzip_names_file_and_line(tmp_path):
    data = gzip.compress(("\n".join(f"line {i}" for i in range(50_000)) + "\n").encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogReadError, match=r"cut\.log\.gz: gzip data is truncated or corrupt after line \d+"):
        list(read_records(path))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(LogReadError, match="nope.log: cannot open"):
        list(read_records(tmp_path / "nope.log"))


def test_custom_format_string_with_literals(tmp_path):
    fmt = LogFormat("<Date> <Time> [<Level>] <Component>: <Content>")
    assert fmt.parse("2024-01-01 10:00:00 [WARN] disk: sda is 91% full") == (
        None, {"Date": "2024-01-01", "Time": "10:00:00", "Level": "WARN", "Component": "disk"}, "sda is 91% full", False)
    label, fields, content, malformed = fmt.parse("garbage without the brackets")
    assert malformed and content == "garbage without the brackets" and fields == {}


@pytest.mark.parametrize("spec", ["<Date> <Level>", "<Content> <Content>"])
def test_bad_format_strings_are_rejected(spec):
    with pytest.raises(LogFormatError):
        LogFormat(spec)


def test_chronological_split():
    records = list(range(10))
    assert chronological_split(records, 0.8) == (list(range(8)), [8, 9])
    with pytest.raises(ValueError, match="train fraction"):
        chronological_split(records, 0)


def test_cli_reads_stdin_and_reports_truncated_gzip(tmp_path):
    result = run_cli("templates", "-", "--format", "raw", stdin=b"disk sda failed\ndisk sdb failed\n")
    assert result.returncode == 0, result.stderr
    assert b"templates learned: 1 from 2 lines" in result.stdout
    data = gzip.compress(b"x 1\n" * 200_000)
    (tmp_path / "t.gz").write_bytes(data[:-20])
    result = run_cli("templates", tmp_path / "t.gz")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert b"gzip data is truncated or corrupt" in result.stderr and b"t.gz" in result.stderr
