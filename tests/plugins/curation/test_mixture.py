"""``data=mixture``: counts by weights and caps, determinism, templates, curation per source, config
errors, and an SFT run on a mixture of two sources that writes the manifest with the right counts."""

import json

import pytest

from alignkit.core.errors import ConfigError
from alignkit.core.options import build_component
from alignkit.core.registry import Registry
from alignkit.plugins.curation.cli import CommandContext

REGISTRY = Registry()


def mixture_source(node):
    """``data=mixture`` built as a run builds it: options checked by the core, the registry lent."""
    return build_component(REGISTRY, "data_source", "mixture", node, CommandContext(REGISTRY), group="data source")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def two_files(tmp_path):
    """30 Alpaca records and 12 chat records."""
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": f"Add {i} and {i + 1}.", "input": "", "output": f"{2 * i + 1}"} for i in range(30)])
    chat = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": f"Say hello number {i}."},
                      {"role": "assistant", "content": f"Hello {i}!"}]} for i in range(12)])
    return alpaca, chat


def sources(alpaca, chat, **extra):
    a = {"data": {"name": "files", "sft": alpaca, "eval_fraction": 0.1}, **extra.get("a", {})}
    c = {"data": {"name": "files", "sft": chat, "eval_fraction": 0.25}, **extra.get("c", {})}
    return {"alpaca": a, "chat": c}


def origins(dataset):
    return ["alpaca" if m[0]["content"].startswith("Add") or "\nAdd " in m[0]["content"] else "chat"
            for m in dataset["messages"]]


def test_weights_caps_and_sizes_set_the_counts(two_files):
    alpaca, chat = two_files  # train splits: 27 alpaca, 9 chat
    plain = mixture_source({"sources": sources(alpaca, chat)})
    assert origins(plain.sft("train")).count("alpaca") == 27 and len(plain.sft("train")) == 36
    capped = mixture_source({"sources": sources(alpaca, chat, a={"cap": 10})})
    assert sorted(origins(capped.sft("train"))) == ["alpaca"] * 10 + ["chat"] * 9
    weighted = mixture_source({"sources": sources(alpaca, chat, a={"weight": 1}, c={"weight": 1}), "size": 40})
    train = weighted.sft("train")
    assert origins(train).count("alpaca") == 20 and origins(train).count("chat") == 20
    chat_rows = [m[0]["content"] for m in train["messages"] if m[0]["content"].startswith("Say")]
    assert len(set(chat_rows)) == 9, "the 9 chat records repeat to give 20"
    entry = weighted.manifest()["sft"]["train"]["sources"]["chat"]
    assert entry == {"available": 9, "taken": 20, "unique": 9, "repeated": 11, "share": 0.5}
    assert len(weighted.sft("eval")) == 3 + 3 == weighted.manifest()["sft"]["eval"]["total"]


def test_the_same_seed_gives_the_same_mixture(two_files):
    alpaca, chat = two_files
    cfg = {"sources": sources(alpaca, chat, a={"weight": 3}, c={"weight": 1}), "size": 20, "seed": 7}
    first = mixture_source(cfg).sft("train")["messages"]
    assert mixture_source(cfg).sft("train")["messages"] == first
    other = mixture_source({**cfg, "seed": 8}).sft("train")["messages"]
    assert other != first and sorted(origins({"messages": other})) == sorted(origins({"messages": first}))


def test_templates_and_per_source_curation_are_recorded(two_files, tmp_path):
    alpaca, chat = two_files
    dup = write_jsonl(tmp_path / "dups.jsonl", [{"instruction": "Name a colour of the rainbow.", "output": c}
                                                for c in ("red", "orange", "yellow", "green")])
    cfg = {"sources": {**sources(alpaca, chat),
                       "dups": {"data": {"name": "files", "sft": dup, "eval_fraction": 0}, "curate": {"dedup": True}}},
           "templates": {"zero_shot": 1, "few_shot": 1, "chain_of_thought": 1, "cot_trigger": "Step by step."}}
    source = mixture_source(cfg)
    train = source.sft("train")
    manifest = source.manifest()
    assert manifest["curation"]["dups"]["removed"] == {"exact_duplicate": 3, "near_duplicate": 0}
    assert manifest["sft"]["train"]["sources"]["dups"]["taken"] == 1
    styles = manifest["sft"]["train"]["sources"]["alpaca"]["templates"]
    assert sum(styles.values()) == 27 and min(styles.values()) > 0
    users = [m[0]["content"] for m in train["messages"]]
    assert sum(u.startswith("Example 1:") for u in users) == sum(
        s["templates"]["few_shot"] for s in manifest["sft"]["train"]["sources"].values())
    assert sum(u.endswith("Step by step.") for u in users) == sum(
        s["templates"]["chain_of_thought"] for s in manifest["sft"]["train"]["sources"].values())


def test_bad_mixture_configs_name_the_problem(two_files):
    alpaca, chat = two_files
    with pytest.raises(ConfigError, match="has no sources"):
        mixture_source({"sources": {}})
    with pytest.raises(ConfigError, match="source 'x': 'data' needs a 'name'"):
        mixture_source({"sources": {"x": {"weight": 1}}})
    with pytest.raises(ConfigError, match="source 'alpaca': weight must be a number >= 0"):
        mixture_source({"sources": sources(alpaca, chat, a={"weight": -1})})
    with pytest.raises(ConfigError, match=r"has no option 'sources.x.wieght' \(did you mean 'weight'\?\)"):
        mixture_source({"sources": {"x": {"data": {"name": "demo"}, "wieght": 1}}})
    bad = mixture_source({"sources": {"x": {"data": {"name": "demo", "sft": "a.jsonl"}}}})
    with pytest.raises(ConfigError, match="data source 'demo' has no option 'sft'"):
        bad.sft("train")


def test_a_bad_mixture_fails_before_the_run_starts(run_alignkit, tmp_path):
    with pytest.raises(ConfigError, match="source 'x': weight must be a number >= 0"):
        run_alignkit("pipeline=sft", "data=mixture", "~data.sources", "+data.sources={x:{data:{name:demo},weight:-1}}",
                     run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists(), "rejected by alignkit_configure, before any work"


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_sft_on_a_mixture_of_two_sources_writes_the_manifest(run_alignkit, two_files, tmp_path):
    alpaca, chat = two_files
    mix = ("+data.sources={alpaca:{data:{name:files,sft:'%s',eval_fraction:0.1},weight:2},"
           "chat:{data:{name:files,sft:'%s',eval_fraction:0.25},weight:1}}" % (alpaca, chat))
    rd = run_alignkit("pipeline=sft", "data=mixture", "~data.sources", mix, "trainer.num_threads=1",
                      "trainer.max_steps=1", run_dir=tmp_path / "run")
    manifest = json.loads((rd.path / "data_manifest.json").read_text())
    # weights 2:1 over 27 and 9 train records, no size: the largest mix without repeats is
    # min(27 / (2/3), 9 / (1/3)) = 27 records, 18 + 9.
    train = manifest["sft"]["train"]
    assert train["total"] == 27
    assert {k: v["taken"] for k, v in train["sources"].items()} == {"alpaca": 18, "chat": 9}
    assert train["sources"]["chat"]["repeated"] == 0
    assert {k: v["taken"] for k, v in manifest["sft"]["eval"]["sources"].items()} == {"alpaca": 3, "chat": 3}
    summary = json.loads((rd.path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["stages"]["sft"]["metrics"]["data/train_examples"] == 27
