"""``alignkit data inspect``: the report and its plots on the shared Alpaca and Self-Instruct slices,
before and after curation, on a data source, and its errors."""

import json
from pathlib import Path

import pytest

from alignkit.core.cli import subcommand
from alignkit.plugins.curation.cli import main

ROOT = Path(__file__).parents[3]
SHARED = ROOT.parent / "shared" / "datasets"  # the shared slices sit next to the repository
ALPACA = SHARED / "alpaca_en_demo_NONCOMMERCIAL" / "alpaca_en_demo.jsonl"
SEEDS = SHARED / "self_instruct_seed_tasks" / "seed_tasks.jsonl"
needs_shared = pytest.mark.skipif(not (ALPACA.exists() and SEEDS.exists()),
                                  reason="shared Alpaca / Self-Instruct slices not present (../shared/datasets)")


def report_of(out):
    return json.loads((out / "report.json").read_text())


def png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_the_data_command_is_registered(capsys):
    command = subcommand("data")
    assert command is not None and command.name == "data"
    with pytest.raises(SystemExit) as info:  # the curation plugin's command runs cli.main
        command.run(["--help"])
    assert info.value.code == 0 and "usage: alignkit data" in capsys.readouterr().out
    assert subcommand("data=demo") is None, "alignkit data=demo still composes a run"


@needs_shared
@pytest.mark.slow  # reads the shared Alpaca slice (over 3 s)
def test_inspect_the_shared_alpaca_slice(tmp_path, capsys):
    out = tmp_path / "alpaca"
    assert main(["inspect", str(ALPACA), "--out", str(out), "--embedding", "off"]) == 0
    report = report_of(out)["before"]
    assert report["size"] == 999
    assert 0 < report["duplicates"]["exact_record_rate"] < 0.05
    assert report["duplicates"]["exact_record_rate"] <= report["duplicates"]["near_duplicate_rate"] < 0.1
    assert 100 < report["length_words"]["response"]["mean"] < 130
    assert 0.5 < report["lexical"]["instruction_distinct_2"] < 0.7
    verbs = [v for v, _, _ in report["verb_noun"]["pairs"][:50]]
    assert {"generate", "create", "describe", "write"} <= set(verbs)
    assert png(out / "verb_noun.png") and png(out / "lengths.png")
    text = (out / "report.md").read_text()
    assert "| records | 999 |" in text and "![Verb-noun structure of the instructions](verb_noun.png)" in text
    assert "alignkit: report:" in capsys.readouterr().out


@needs_shared
def test_inspect_the_self_instruct_seed_tasks_before_and_after_curation(tmp_path):
    out = tmp_path / "seeds"
    args = ["inspect", str(SEEDS), "--out", str(out), "--embedding", "off", "--dedup", "--dedup-threshold", "0.5",
            "--rule", "alignkit.plugins.rules.demo:concise", "--top-k", "100"]
    assert main(args) == 0
    report = report_of(out)
    before, after, curation = report["before"], report["after"], report["curation"]
    assert before["size"] == sum(1 for line in SEEDS.read_text().splitlines() for _ in json.loads(line)["instances"])
    assert after["size"] == curation["kept"] == 100
    assert curation["removed"]["near_duplicate"] > 0 and curation["removed"]["below_top_k"] > 0
    assert after["duplicates"]["near_duplicate_rate"] == 0.0, "dedup at 0.5 leaves none above 0.7"
    assert after["quality"]["mean"] > before["quality"]["mean"], "top-k keeps the better-scored records"
    assert len((out / "curated.jsonl").read_text().splitlines()) == 100
    for name in ("lengths.png", "verb_noun.png", "verb_noun_after.png", "quality.png"):
        assert png(out / name), name
    assert "| metric | before | after |" in (out / "report.md").read_text()


def test_inspect_a_data_source_and_bad_input(tmp_path, capsys):
    out = tmp_path / "src"
    assert main(["inspect", "data=self_instruct", "data.num_instructions=0", "data.include_seed_tasks=true",
                 "--out", str(out), "--embedding", "off"]) == 0
    assert report_of(out)["before"]["size"] == 27  # the shipped seed tasks' instances, train and eval
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Add.", "output": "1"}\n{"instruction": "Add.", "output": 2}\n')
    assert main(["inspect", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "bad.jsonl:2: field 'output': expected a string" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err
