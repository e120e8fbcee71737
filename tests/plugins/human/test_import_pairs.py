"""``alignkit label import``: a bad pair is reported at the file's own line (blank lines and a
CSV header count, as in an editor), bytes that are not UTF-8 by file and line, and nothing is
imported from a file with an error."""

import json

import pytest

from alignkit.core.errors import DataError
from alignkit.plugins.human import interop
from alignkit.plugins.human.cli import main
from alignkit.plugins.human.store import Store

GOOD = {"prompt": "What is 3 + 4?", "response_a": "7", "response_b": "8"}


@pytest.fixture
def label(capsys):
    def run(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_error_names_the_file_line_not_the_record_number(tmp_path, label):
    path = tmp_path / "pairs.jsonl"
    # line 1 a pair, lines 2-3 blank, line 4 the bad pair (the second record)
    path.write_text(json.dumps(GOOD) + "\n\n\n" + json.dumps({"prompt": "x", "response_a": "y"}) + "\n")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    code, _, err = label("import", "--db", db, "--project", "p", "--pairs", str(path))
    assert code == 2
    assert f"{path}:4: field 'response_b': missing (a pair needs response_a/response_b or chosen/rejected)" in err
    assert Store(db).items("p") == []  # checked before anything is imported


def test_non_utf8_bytes_are_reported_by_file_and_line(tmp_path, label):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\n" + b'{"prompt": "caf\xe9", "response_a": "a", "response_b": "b"}\n')
    with pytest.raises(DataError) as err:
        interop.read_pairs(path)
    # '{"prompt": "caf' is 15 characters: the bad byte is in column 16
    assert str(err.value) == f"{path}:3: not valid UTF-8 (byte 0xe9 at column 16)"
    code, _, stderr = label("import", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--pairs", str(path))
    assert code == 2 and f"{path}:3: not valid UTF-8" in stderr and "Traceback" not in stderr


def test_csv_pairs_count_the_header_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,response_a,response_b\nQ1,yes,no\nQ2,,no\n")
    with pytest.raises(DataError) as err:
        interop.read_pairs(path)
    assert str(err.value).startswith(f"{path}:3: field 'response_a': ")


def test_label_studio_errors_name_the_record_not_a_line(tmp_path):
    tasks = [{"data": {"prompt": "Q", "response_a": "a", "response_b": "b"}, "annotations": []},
             {"data": {"prompt": "Q2", "response_a": "a", "response_b": "b"},
              "annotations": [{"completed_by": {"email": "alice"}, "result": []}]}]
    with pytest.raises(DataError) as err:
        interop.import_label_studio(Store(f"sqlite:///{tmp_path / 'a.db'}"), "p", tasks, source="ls.json")
    assert str(err.value) == ("ls.json (record 2): field 'annotations.result': no pairwise selection and no 'tie' "
                              "choice in this annotation")
