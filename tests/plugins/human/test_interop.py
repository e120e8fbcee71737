"""Pairs and labels in and out: JSONL, Argilla, Label Studio, and the ``alignkit label`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

from alignkit.core.errors import DataError
from alignkit.plugins.human import interop
from alignkit.plugins.human.store import Store

PAIRS = [
    {"prompt": [{"role": "user", "content": "What is 3 + 4?"}], "response_a": "7", "response_b": "8"},
    {"prompt": "Convert 2 km to m.", "chosen": "2000 m", "rejected": "200 m", "source": "demo"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>x</b>"}],
     "response_a": "Hello.", "response_b": "Hi there, how are you doing today?"},
]


def labelled_store(tmp_path, name="a.db") -> Store:
    """Three pairs; alice and bob label all three, carol skips one."""
    store = Store(f"sqlite:///{tmp_path / name}")
    ids = store.add_items("p", [{"prompt": p["prompt"], "response_a": p.get("response_a", p.get("chosen")),
                                 "response_b": p.get("response_b", p.get("rejected"))} for p in PAIRS], overlap=2)
    people = {n: store.authenticate(store.add_annotator(n)).id for n in ("alice", "bob", "carol")}
    votes = {"alice": ["a", "a", "tie"], "bob": ["a", "b", "b"], "carol": ["skip", None, None]}
    for who, choices in votes.items():
        for item_id, choice in zip(ids, choices):
            if choice:
                store.submit(item_id, people[who], choice, comment="looked twice" if who == "bob" else "")
    return store


def label_set(store: Store) -> set:
    items = {i.id: (json.dumps(i.prompt, sort_keys=True), i.response_a, i.response_b) for i in store.items("p")}
    return {(items[r.item_id], r.annotator, r.choice) for r in store.labels("p")}


@pytest.mark.parametrize("fmt", ["argilla", "label-studio"])
def test_round_trip_keeps_pairs_and_labels(tmp_path, fmt):
    src = labelled_store(tmp_path)
    exporter = interop.export_argilla if fmt == "argilla" else interop.export_label_studio
    importer = interop.import_argilla if fmt == "argilla" else interop.import_label_studio
    records = json.loads(json.dumps(exporter(src, "p")))  # through JSON, as a file would be
    dst = Store(f"sqlite:///{tmp_path / 'b.db'}")
    items, labels = importer(dst, "p", records)
    assert items == 3 and labels == 7  # 6 votes + 1 skip
    assert label_set(dst) == label_set(src)
    # importing the same file again changes nothing
    assert importer(dst, "p", records) == (3, 0)
    assert len(dst.labels("p")) == 7


def test_argilla_and_label_studio_shapes(tmp_path):
    store = labelled_store(tmp_path)
    record = interop.export_argilla(store, "p")[0]
    assert record["fields"]["response_a"] == "7"
    assert {r["user_id"]: r["value"] for r in record["responses"]["preference"]} == {
        "alice": "a", "bob": "a", "carol": None}
    task = interop.export_label_studio(store, "p")[1]
    assert task["data"]["prompt"] == "Convert 2 km to m." and task["data"]["response_b"] == "200 m"
    results = {a["completed_by"]["email"]: a["result"][0]["value"] for a in task["annotations"]}
    assert results == {"alice": {"selected": "left"}, "bob": {"selected": "right"}}
    tie = interop.export_label_studio(store, "p")[2]["annotations"][0]["result"][0]
    assert tie["type"] == "choices" and tie["value"] == {"choices": ["tie"]}
    with pytest.raises(DataError, match=r"bad.json \(record 1\): field .fields."):
        interop.import_argilla(store, "p", [{"nope": 1}], source="bad.json")
    with pytest.raises(DataError, match="expected a, b or tie"):
        interop.import_argilla(store, "p", [{"fields": {"prompt": "q", "response_a": "x", "response_b": "y"},
                                             "responses": {"preference": [{"user_id": "u", "value": "c"}]}}])


def test_preference_export(tmp_path):
    store = labelled_store(tmp_path)
    raw = interop.export_preferences(store, "p", aggregate="none")
    assert len(raw) == 6  # skips are not preferences
    tie = [r for r in raw if r["tie"]]
    assert len(tie) == 1 and tie[0]["strength"] == 0.5 and tie[0]["annotator"] == "alice"
    agg = {r["item_id"]: r for r in interop.export_preferences(store, "p", aggregate="majority")}
    first, second, third = (agg[i] for i in sorted(agg))
    assert first["chosen"] == "7" and first["strength"] == 1.0 and first["votes"] == 2  # carol's skip ignored
    assert second["tie"] and second["strength"] == 0.5 and second["agreement"] == 0.5
    # alice tie + bob b: P(A) = 0.25 -> B chosen with strength 0.75
    assert third["chosen"].startswith("Hi there") and third["strength"] == 0.75
    assert third["prompt"][0]["role"] == "system"
    # every exported record is valid preference data for `data=files`
    from alignkit.plugins.data import formats

    for row in raw + list(agg.values()):
        record = formats.convert(row, "preferences", formats.choose_format(row, "preferences"), "x")
        assert record["chosen"] == row["chosen"] and record["strength"] == row["strength"]


def test_read_pairs_errors_name_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({"prompt": "x", "response_a": "y"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:2: field 'response_b'"):
        interop.read_pairs(path)


def alignkit_label(*args):
    """The real command line, as a user types it (one process: startup costs seconds)."""
    # cwd outside the checkout: a stale alignkit.egg-info there would hide the installed entry points
    return subprocess.run([sys.executable, "-m", "alignkit.core.cli", "label", *args], capture_output=True,
                          text=True, cwd=tempfile.gettempdir(), timeout=120)


def test_cli_import_export(tmp_path, capsys):
    from alignkit.plugins.human.cli import main

    def label(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    out = alignkit_label("add-annotator", "alice", "--db", db)
    assert out.returncode == 0, out.stderr
    token = out.stdout.split()[out.stdout.split().index("stored):") + 1]
    assert Store(db).authenticate(token).name == "alice"
    code, stdout, _ = label("import", "--db", db, "--project", "p", "--pairs", str(pairs), "--overlap", "2")
    assert code == 0 and "imported 3 pairs" in stdout
    # label one through the store, then export it in every format
    store = Store(db)
    store.submit(store.items("p")[0].id, store.authenticate(token).id, "b")
    code, stdout, _ = label("export", "--db", db, "--project", "p", "--aggregate", "none")
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert rows == [{**rows[0], "chosen": "8", "rejected": "7", "annotator": "alice"}]
    target = tmp_path / "ls.json"
    assert label("export", "--db", db, "--project", "p", "--format", "label-studio", "--out", str(target))[0] == 0
    assert len(json.loads(target.read_text())) == 3
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, stdout, _ = label("import", "--db", other, "--project", "p", "--label-studio", str(target))
    assert code == 0 and "imported 3 pairs and 1 labels" in stdout
    code, stdout, _ = label("status", "--db", other, "--project", "p")
    assert json.loads(stdout)["progress"]["annotators"]["alice"]["labels"] == 1
    code, _, stderr = label("import", "--db", db, "--pairs", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in stderr
    code, _, stderr = label("export", "--db", db, "--project", "nope")
    assert code == 2 and "no project 'nope'" in stderr
