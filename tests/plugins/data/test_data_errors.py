"""Bad input gives one exact ``file:line: field 'x': message`` error; ``skip`` counts instead."""

import json
import logging

import pytest

from alignkit.core import ConfigError, DataError
from alignkit.plugins.data.plugin import FilesDataSource, files_source

GOOD = {"prompt": "Q", "chosen": "yes", "rejected": "no"}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def write_lines(path, lines):
    """Write raw lines (str are JSON-encoded dicts or verbatim text; bytes verbatim)."""
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
    path.write_bytes(out)


def error_of(kind, lines, data_dir, name="train.jsonl", **options):
    write_lines(data_dir / name, lines)
    src = FilesDataSource(**{kind: f"data/{name}"}, eval_fraction=0, **options)
    with pytest.raises(DataError) as err:
        getattr(src, kind)("train")
    return str(err.value), err.value


def test_empty_response_names_file_line_and_field(data_dir):
    lines = [GOOD] * 16 + [{"prompt": "Q", "chosen": "   ", "rejected": "no"}]
    message, err = error_of("preferences", lines, data_dir)
    assert message == "data/train.jsonl:17: field 'chosen': empty response"
    assert (err.path, err.line, err.field) == ("data/train.jsonl", 17, "chosen")


def test_invalid_json(data_dir):
    message, err = error_of("preferences", [GOOD, GOOD, '{"prompt": "Q", "chosen": "a" "rejected": "b"}'], data_dir)
    assert message == "data/train.jsonl:3: invalid JSON: Expecting ',' delimiter (column 31)"
    assert err.field is None


def test_missing_field(data_dir):
    message, _ = error_of("preferences", [GOOD, {"prompt": "Q", "chosen": "yes"}], data_dir)
    assert message == "data/train.jsonl:2: field 'rejected': missing (required by the 'preference' format)"


def test_wrong_type(data_dir):
    message, _ = error_of("preferences", [GOOD, {"prompt": "Q", "chosen": 5, "rejected": "no"}], data_dir)
    assert message == "data/train.jsonl:2: field 'chosen': expected a string or a list of messages, got int"


def test_non_utf8_bytes(data_dir):
    message, _ = error_of("preferences", [GOOD, b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}'], data_dir)
    assert message == "data/train.jsonl:2: not valid UTF-8 (byte 0xe9 at column 16)"


def test_blank_lines_keep_line_numbers(data_dir):
    message, _ = error_of("preferences", [GOOD, "", "   ", {"prompt": "", "chosen": "a", "rejected": "b"}], data_dir)
    assert message == "data/train.jsonl:4: field 'prompt': empty prompt"


def test_not_an_object(data_dir):
    message, _ = error_of("sft", ['[1, 2]'], data_dir)
    assert message == "data/train.jsonl:1: expected a JSON object, got list"


@pytest.mark.parametrize("row, expected", [
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]},
     "field 'messages[1].role': unknown role 'bot'; use one of: system, user, assistant"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]},
     "field 'messages[1].content': empty response"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}]},
     "field 'messages[1].content': missing"),
    ({"messages": [{"role": "user", "content": "Hi"}]},
     "field 'messages': needs at least one assistant turn"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                   {"role": "user", "content": "?"}]},
     "field 'messages': the last turn must be the assistant's, not 'user'"),
    ({"messages": "Hi"}, "field 'messages': expected a list of messages, got string"),
])
def test_bad_messages(data_dir, row, expected):
    message, _ = error_of("sft", [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, row],
                          data_dir)
    assert message == f"data/train.jsonl:2: {expected}"


@pytest.mark.parametrize("row, expected", [
    ({**GOOD, "strength": 1.5}, "field 'strength': expected a number in [0, 1], got 1.5"),
    ({**GOOD, "strength": "high"}, "field 'strength': expected a number in [0, 1], got string"),
    ({"chosen": "a", "rejected": "b"}, "field 'prompt': missing (required when 'chosen' and 'rejected' are strings)"),
    ({"prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "chosen": "a", "rejected": "b"},
     "field 'prompt': the prompt must end with a user turn, not 'assistant'"),
    ({"prompt": "Q", "chosen": "a", "rejected": ""}, "field 'rejected': empty response"),
])
def test_bad_preference_fields(data_dir, row, expected):
    message, _ = error_of("preferences", [GOOD, row], data_dir)
    assert message == f"data/train.jsonl:2: {expected}"


def test_hh_rlhf_differing_dialogues(data_dir):
    row = {"chosen": "\n\nHuman: A\n\nAssistant: B", "rejected": "\n\nHuman: X\n\nAssistant: B"}
    message, _ = error_of("preferences", [row], data_dir)
    assert message == ("data/train.jsonl:1: field 'rejected': the dialogue before the final Assistant turn "
                       "differs from 'chosen'")


def test_unrecognised_first_record(data_dir):
    message, _ = error_of("preferences", [{"question": "Q", "answer": "A"}], data_dir)
    assert message.startswith("data/train.jsonl:1: field 'chosen': missing: cannot read this record as "
                              "preferences data; found keys 'question', 'answer'")


def test_json_array_line_numbers(data_dir):
    text = '[\n  {"prompt": "Q", "chosen": "a", "rejected": "b"},\n\n  {"prompt": "Q",\n   "chosen": "", "rejected": "b"}\n]\n'
    (data_dir / "pairs.json").write_text(text)
    with pytest.raises(DataError, match=r"^data/pairs\.json:4: field 'chosen': empty response$"):
        FilesDataSource(preferences="data/pairs.json").preferences("train")


def test_json_data_object_line_numbers(data_dir):
    text = '{"version": 1, "meta": {"a": [1, 2]},\n "data": [\n  {"prompt": "Q", "chosen": "a", "rejected": 3}\n]}'
    (data_dir / "pairs.json").write_text(text)
    with pytest.raises(DataError, match=r"^data/pairs\.json:3: field 'rejected': expected a string"):
        FilesDataSource(preferences="data/pairs.json").preferences("train")


def test_broken_json_document(data_dir):
    (data_dir / "pairs.json").write_text('[\n {"prompt": "Q",\n  "chosen": }\n]')
    with pytest.raises(DataError, match=r"^data/pairs\.json:3: invalid JSON: Expecting value"):
        FilesDataSource(preferences="data/pairs.json").preferences("train")


def test_csv_line_numbers(data_dir):
    (data_dir / "pairs.csv").write_text('prompt,chosen,rejected\nQ,"multi\nline",b\nQ,,b\n')
    with pytest.raises(DataError, match=r"^data/pairs\.csv:4: field 'chosen': missing"):
        FilesDataSource(preferences="data/pairs.csv").preferences("train")


def test_parquet_row_numbers(data_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([GOOD, {**GOOD, "rejected": " "}]), data_dir / "pairs.parquet")
    with pytest.raises(DataError, match=r"^data/pairs\.parquet:2: field 'rejected': empty response$"):
        FilesDataSource(preferences="data/pairs.parquet").preferences("train")


def test_missing_file_fails_when_the_source_is_built(data_dir):
    with pytest.raises(DataError, match=r"^data/nope\.jsonl: file not found$"):
        files_source({"sft": "data/nope.jsonl"})
    with pytest.raises(DataError, match="not a local file or folder, nor a hub dataset id"):
        files_source({"sft": "no-such-thing"})


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown format 'yaml'"):
        files_source({"format": "yaml"})
    with pytest.raises(ConfigError, match="on_bad_record must be 'error' or 'skip'"):
        files_source({"on_bad_record": "ignore"})
    with pytest.raises(ConfigError, match=r"eval_fraction must be in \[0, 1\)"):
        files_source({"eval_fraction": 1.0})
    with pytest.raises(ConfigError, match="has no option 'sft_path'"):
        files_source({"sft_path": "x"})


# -- skip mode --------------------------------------------------------------------------


def test_skip_counts_bad_records_and_warns(data_dir, caplog):
    lines = [GOOD, "{not json", {"prompt": "Q", "chosen": "", "rejected": "no"}, GOOD,
             b'{"prompt": "\xff", "chosen": "a", "rejected": "b"}', {**GOOD, "strength": 2}, GOOD]
    write_lines(data_dir / "train.jsonl", lines)
    src = FilesDataSource(preferences="data/train.jsonl", on_bad_record="skip", eval_fraction=0)
    with caplog.at_level(logging.WARNING, logger="alignkit.data"):
        ds = src.preferences("train")
    assert len(ds) == 3
    assert src.skipped == {"preferences": 4}
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == ["data: skipped 4 bad preferences record(s) in data/train.jsonl (kept 3); first: "
                       "data/train.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)"]


def test_skip_with_nothing_left_is_an_error(data_dir):
    write_lines(data_dir / "train.jsonl", [{"prompt": "Q", "chosen": "", "rejected": "no"}, "oops"])
    src = FilesDataSource(preferences="data/train.jsonl", on_bad_record="skip")
    with pytest.raises(DataError) as err:
        src.preferences("train")
    assert str(err.value) == ("data/train.jsonl: no valid preferences records (2 bad record(s) skipped; first: "
                              "data/train.jsonl:1: field 'chosen': empty response)")


def test_skip_detects_the_format_from_the_first_good_record(data_dir):
    write_lines(data_dir / "train.jsonl", ["garbage", {"instruction": "Hi", "output": "Hello"}])
    src = FilesDataSource(sft="data/train.jsonl", on_bad_record="skip", eval_fraction=0)
    assert len(src.sft("train")) == 1 and src.formats["sft"] == "alpaca" and src.skipped == {"sft": 1}
