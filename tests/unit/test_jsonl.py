"""The append-only logs: a crash can cut only the last line short, and anything else that is not JSON is named."""

import pytest

from llm_ladder.outputs.jsonl import CorruptLog, append_line, read_lines


def test_a_crash_truncated_last_line_is_skipped_and_dropped_by_the_next_append(tmp_path):
    log = tmp_path / "results.jsonl"
    append_line(log, '{"a": 1}')
    with log.open("a") as f:
        f.write('{"b": ')  # the process died mid-write
    assert read_lines(log) == [{"a": 1}]
    append_line(log, '{"c": 3}')  # a resumed run goes on writing
    assert read_lines(log) == [{"a": 1}, {"c": 3}]
    assert log.read_text() == '{"a": 1}\n{"c": 3}\n'


def test_a_corrupt_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    log = tmp_path / "results.jsonl"
    log.write_text('{"a": 1}\nnot json\n{"c": 3}\n')
    with pytest.raises(CorruptLog, match=r"results.jsonl: line 2 is not JSON"):
        read_lines(log)
    log.write_text('{"a": 1}\n{"b": 2')  # only the last line may be partial
    assert read_lines(log) == [{"a": 1}]
    only = tmp_path / "only.jsonl"
    only.write_text('{"partial": ')
    append_line(only, '{"x": 1}')
    assert read_lines(only) == [{"x": 1}]


def test_a_whole_last_record_without_its_newline_is_kept_by_the_next_append(tmp_path):
    log = tmp_path / "results.jsonl"
    log.write_text('{"a": 1}\n{"b": 2}')  # written by hand or another tool, complete
    append_line(log, '{"c": 3}')
    assert read_lines(log) == [{"a": 1}, {"b": 2}, {"c": 3}]
