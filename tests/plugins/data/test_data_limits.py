"""What a file may not do to a run: one huge line (cut to ``max_chars_per_field`` before
tokenising, and counted) and pairs whose answers are the same (dropped and counted; a file
of nothing else is refused, like all-tie data in the label stage)."""

import json
import logging

import pytest

from alignkit.core import ConfigError, DataError
from alignkit.plugins.data.plugin import FilesDataConfig, FilesDataSource, files_source


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def write_lines(path, rows):
    """JSON lines; ``""`` writes a blank line (line numbers still count it)."""
    path.write_text("".join((json.dumps(r) if r != "" else "") + "\n" for r in rows), encoding="utf-8")
    return str(path)


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- max_chars_per_field ----------------------------------------------------------------


def test_a_multi_megabyte_line_is_cut_before_tokenising(data_dir, caplog):
    huge = "ab" * 1_500_000  # 3,000,000 characters on one line
    rows = [{"prompt": "Q", "chosen": huge, "rejected": "no"},
            {"prompt": "Q2", "chosen": "yes", "rejected": "no"},
            {"prompt": huge, "chosen": "yes", "rejected": huge}]
    write_lines(data_dir / "pairs.jsonl", rows)
    src = FilesDataSource(preferences="data/pairs.jsonl", eval_fraction=0)
    with caplog.at_level(logging.WARNING, logger="alignkit.data"):
        ds = src.preferences("train")
    assert FilesDataConfig.max_chars_per_field == 20000
    assert [len(c) for c in ds["chosen"]] == [20000, 3, 3]
    assert ds["chosen"][0] == "ab" * 10000  # the head is kept
    assert [len(p[0]["content"]) for p in ds["prompt"]] == [1, 2, 20000]
    assert [len(r) for r in ds["rejected"]] == [2, 2, 20000]
    assert src.truncated == {"preferences": 2}  # records, not texts: the third has two cut texts
    assert warnings_of(caplog) == ["data: 2 preferences record(s) in data/pairs.jsonl cut to 20000 characters "
                                   "per text (data.max_chars_per_field)"]


def test_sft_messages_are_cut_to_the_configured_size_and_null_keeps_everything(data_dir):
    long = "x" * 300_000
    path = write_lines(data_dir / "chat.jsonl", [{"messages": [{"role": "user", "content": "Hi"},
                                                              {"role": "assistant", "content": long}]}])
    cut = files_source({"sft": path, "eval_fraction": 0, "max_chars_per_field": 1000})
    assert len(cut.sft("train")[0]["messages"][1]["content"]) == 1000
    assert cut.truncated == {"sft": 1}
    whole = files_source({"sft": path, "eval_fraction": 0, "max_chars_per_field": None})
    assert len(whole.sft("train")[0]["messages"][1]["content"]) == 300_000
    assert whole.truncated == {"sft": 0}


@pytest.mark.parametrize("value", [0, -5, True, "big"])
def test_max_chars_per_field_must_be_positive_or_null(value):
    with pytest.raises(ConfigError, match="max_chars_per_field must be a positive number of characters or null"):
        FilesDataSource(max_chars_per_field=value)


# -- identical chosen and rejected ------------------------------------------------------


def test_identical_pairs_are_dropped_and_their_lines_named(data_dir, caplog):
    same = {"prompt": "Q", "chosen": "same", "rejected": "same"}
    good = {"prompt": "Q", "chosen": "yes", "rejected": "no"}
    # file lines: 1 good, 2 same, 3 blank, 4 same, 5 good, 6-10 same
    write_lines(data_dir / "pairs.jsonl", [good, same, "", same, good] + [same] * 5)
    src = FilesDataSource(preferences="data/pairs.jsonl", eval_fraction=0)
    with caplog.at_level(logging.WARNING, logger="alignkit.data"):
        ds = src.preferences("train")
    assert len(ds) == 2 and ds["chosen"] == ["yes", "yes"]
    assert src.identical == {"preferences": 7}
    assert warnings_of(caplog) == ["data: dropped 7 preference pair(s) of data/pairs.jsonl with identical 'chosen' "
                                   "and 'rejected' (no preference signal; lines 2, 4, 6, 7, 8, ...)"]


def test_a_file_of_identical_pairs_is_refused(data_dir):
    write_lines(data_dir / "pairs.jsonl", [{"prompt": f"Q{i}", "chosen": "same", "rejected": "same"}
                                           for i in range(3)])
    src = FilesDataSource(preferences="data/pairs.jsonl", eval_fraction=0)
    with pytest.raises(DataError) as err:
        src.preferences("train")
    assert str(err.value) == ("data/pairs.jsonl: all 3 preference pair(s) have identical 'chosen' and 'rejected' "
                              "(no preference signal); nothing to learn from. Give pairs whose answers differ")


def test_pairs_equal_after_cutting_count_as_identical(data_dir):
    """Answers that differ only after ``max_chars_per_field`` characters teach nothing once cut."""
    write_lines(data_dir / "pairs.jsonl", [{"prompt": "Q", "chosen": "a" * 50 + "good", "rejected": "a" * 50 + "bad"},
                                           {"prompt": "Q", "chosen": "yes", "rejected": "no"}])
    src = FilesDataSource(preferences="data/pairs.jsonl", eval_fraction=0, max_chars_per_field=50)
    assert len(src.preferences("train")) == 1
    assert src.truncated == {"preferences": 1} and src.identical == {"preferences": 1}
