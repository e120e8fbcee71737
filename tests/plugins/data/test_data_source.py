"""File types, hub ids through ``datasets.load_dataset``, held-out splits, memoising, the
registry entries and real HH-RLHF lines."""

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alignkit.core import DataSourceEntry
from alignkit.plugins.data import loaders
from alignkit.plugins.data import plugin as data_plugin
from alignkit.plugins.data.plugin import FilesDataSource, files_source

ROOT = Path(__file__).parents[3]
HH = Path("/work/shared/datasets/hh_rlhf/helpful_base.test.jsonl")

PAIRS = [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": [{"role": "user", "content": "Capital of France?"}], "chosen": "Paris.", "rejected": "Lyon.",
     "strength": 0.9},
    {"prompt": "Spell cat backwards.", "chosen": "tac", "rejected": "act"},
]


def pair_rows(n):
    return [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# -- file types -------------------------------------------------------------------------


def test_jsonl_json_parquet_csv_give_the_same_dataset(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {"jsonl": write_jsonl(tmp_path / "p.jsonl", PAIRS)}
    (tmp_path / "p.json").write_text(json.dumps(PAIRS, indent=2))
    (tmp_path / "d.json").write_text(json.dumps({"data": PAIRS}))
    paths["json"], paths["json_data"] = str(tmp_path / "p.json"), str(tmp_path / "d.json")
    # Parquet needs one type per column: keep the conversational prompt as a list everywhere.
    as_lists = [{**r, "prompt": r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}],
                 "strength": r.get("strength", 1.0)} for r in PAIRS]
    pq.write_table(pa.Table.from_pylist(as_lists), tmp_path / "p.parquet")
    paths["parquet"] = str(tmp_path / "p.parquet")
    csv_lines = ["prompt,chosen,rejected,strength"]
    for r in PAIRS:
        prompt = json.dumps(r["prompt"]) if isinstance(r["prompt"], list) else r["prompt"]
        csv_lines.append(",".join('"' + str(v).replace('"', '""') + '"' for v in
                                  (prompt, r["chosen"], r["rejected"], r.get("strength", ""))))
    (tmp_path / "p.csv").write_text("\n".join(csv_lines) + "\n")
    paths["csv"] = str(tmp_path / "p.csv")

    results = {}
    for name, path in paths.items():
        ds = FilesDataSource(preferences=path, eval_fraction=0).preferences("train")
        results[name] = [{k: v for k, v in row.items() if k != "source"} for row in ds]
    expected = results["jsonl"]
    assert expected[1] == {"prompt": [{"role": "user", "content": "Capital of France?"}], "chosen": "Paris.",
                           "rejected": "Lyon.", "strength": 0.9}
    assert expected[0]["strength"] == 1.0
    for name, rows in results.items():
        assert rows == expected, name


def test_gzipped_jsonl(tmp_path):
    import gzip

    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in PAIRS))
    assert len(FilesDataSource(preferences=str(tmp_path / "p.jsonl.gz"), eval_fraction=0).preferences("train")) == 3


def test_unsupported_suffix(tmp_path):
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(Exception, match=r"unsupported file type '\.txt'"):
        FilesDataSource(sft=str(tmp_path / "p.txt"))


# -- hub ids through datasets.load_dataset ----------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def test_hub_style_id_resolving_to_a_local_dataset_folder(tmp_path, monkeypatch, hf_cache):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "owner" / "name"
    folder.mkdir(parents=True)
    write_jsonl(folder / "train.jsonl", [{"prompt": "Hi", "completion": "Hello"}, {"prompt": "Yo", "completion": "Hey"}])
    write_jsonl(folder / "test.jsonl", [{"prompt": "Bye", "completion": "Ciao"}])
    src = FilesDataSource(sft="owner/name", eval_sft="owner/name:test")
    assert src.locations["sft"].kind == "folder" and src.locations["eval_sft"].split == "test"
    assert [m[0]["content"] for m in src.sft("train")["messages"]] == ["Hi", "Yo"]
    assert src.sft("eval")["messages"] == [[{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]]


def test_hub_id_calls_load_dataset_with_name_and_split(monkeypatch, tmp_path):
    import datasets

    calls = []

    def fake_load_dataset(path, split=None, **kwargs):
        calls.append((path, split))
        return datasets.Dataset.from_list(pair_rows(4))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    src = FilesDataSource(preferences="someone/pairs:train[:4]", eval_preferences="someone/pairs", eval_fraction=0)
    assert len(src.preferences("train")) == 4 and len(src.preferences("eval")) == 4
    assert calls == [("someone/pairs", "train[:4]"), ("someone/pairs", "test")]
    assert src.preferences("train")[0]["source"] == "someone/pairs:train[:4]"


def test_unreachable_hub_dataset_is_a_data_error(monkeypatch, tmp_path):
    import datasets

    def offline(path, split=None, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(Exception, match=r"^someone/pairs: cannot load hub dataset \(split 'train'\) with "
                                        r"datasets\.load_dataset: ConnectionError: hub unreachable$"):
        FilesDataSource(preferences="someone/pairs").preferences("train")


# -- held-out split and memoising -------------------------------------------------------


def test_eval_fraction_split_is_deterministic_and_disjoint(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", pair_rows(50))
    a, b = (FilesDataSource(preferences=path, eval_fraction=0.2, seed=7) for _ in range(2))
    train, held = a.preferences("train")["prompt"], a.preferences("eval")["prompt"]
    assert (len(train), len(held)) == (40, 10)
    assert held == b.preferences("eval")["prompt"] and train == b.preferences("train")["prompt"]
    keys = lambda rows: {r[0]["content"] for r in rows}  # noqa: E731
    assert not keys(train) & keys(held) and len(keys(train) | keys(held)) == 50
    other_seed = FilesDataSource(preferences=path, eval_fraction=0.2, seed=8).preferences("eval")["prompt"]
    assert keys(other_seed) != keys(held)
    # File order is kept within each split.
    assert [int(r[0]["content"][1:]) for r in train] == sorted(int(r[0]["content"][1:]) for r in train)


@pytest.mark.parametrize("n, fraction, expected", [(2, 0.1, (1, 1)), (1, 0.1, (1, 0)), (10, 0.0, (10, 0)),
                                                   (3, 0.9, (1, 2)), (20, 0.1, (18, 2))])
def test_holdout_sizes(n, fraction, expected):
    train, held = loaders.holdout(n, fraction, seed=0)
    assert (len(train), len(held)) == expected
    assert sorted(train + held) == list(range(n))


def test_eval_file_is_used_instead_of_a_fraction(tmp_path):
    src = FilesDataSource(preferences=write_jsonl(tmp_path / "t.jsonl", pair_rows(5)),
                          eval_preferences=write_jsonl(tmp_path / "e.jsonl", pair_rows(2)), eval_fraction=0.5)
    assert (len(src.preferences("train")), len(src.preferences("eval"))) == (5, 2)


def test_each_file_is_loaded_once(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "p.jsonl", pair_rows(10))
    src = FilesDataSource(preferences=path)
    calls = []
    real = loaders.load
    monkeypatch.setattr(loaders, "load", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    first = src.preferences("train")
    src.preferences("eval"), src.prompts("train"), src.prompts("eval"), src.sft("train")
    assert src.preferences("train") is first
    assert calls == ["preferences"]


def test_bad_split_name(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        FilesDataSource().sft("validation")


# -- registry entries -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "files"])
def test_schema_fields_are_exactly_the_yaml_options(name):
    entries = {e.name: e for e in data_plugin.alignkit_data_sources()}
    assert set(entries) == {"demo", "files"}
    entry = entries[name]
    assert isinstance(entry, DataSourceEntry)
    yaml_cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "data" / f"{name}.yaml"))
    assert yaml_cfg.pop("name") == name
    # every option comes from the dataclass (Hydra's config store); the file sets only what differs
    assert yaml_cfg.pop("defaults") == [f"/dataclass_defaults/data/{name}@_here_", "_self_"]
    fields = {f.name for f in dataclasses.fields(entry.config_schema)}
    assert set(yaml_cfg) <= fields
    # The runner checks the node against the schema and calls the factory with the instance.
    from alignkit.core.options import component_options

    source = entry.factory(component_options("data source", entry, OmegaConf.create(yaml_cfg | {"name": name})), None)
    from alignkit.core.interfaces import DataSource

    assert isinstance(source, DataSource)


def test_files_factory_accepts_a_dictconfig(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", pair_rows(3))
    cfg = OmegaConf.create({"name": "files", "preferences": path, "eval_fraction": 0.0, "on_bad_record": "skip"})
    src = files_source(cfg)
    assert len(src.preferences("train")) == 3 and src.on_bad_record == "skip"


def test_plugin_is_registered_with_the_plugin_manager():
    import pluggy

    from alignkit.core import hookspecs
    from alignkit.core.registry import Registry

    pm = pluggy.PluginManager(hookspecs.PROJECT)  # only this plugin: others may be half-built
    pm.add_hookspecs(hookspecs)
    pm.register(data_plugin, name="data")
    registry = Registry(pm)
    assert registry.get("data_source", "files").factory is files_source
    assert registry.get("data_source", "demo").config_schema is data_plugin.DemoDataConfig


# -- real HH-RLHF lines -----------------------------------------------------------------


@pytest.mark.skipif(not HH.exists(), reason="shared HH-RLHF slice not present")
def test_hh_rlhf_real_lines(tmp_path):
    from alignkit.plugins.data.formats import parse_hh

    lines = HH.read_text(encoding="utf-8").splitlines()[:12]
    path = tmp_path / "hh.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = FilesDataSource(preferences=str(path), eval_fraction=0)
    ds = src.preferences("train")
    assert src.formats["preferences"] == "hh_rlhf"  # detected although the file also has 'prompt'
    assert len(ds) == 12
    for raw_line, row in zip(lines, ds):
        raw = json.loads(raw_line)
        # The slice's own derived fields agree with our split of the transcripts.
        assert row["chosen"] == raw["chosen_response"].strip()
        assert row["rejected"] == raw["rejected_response"].strip()
        assert row["prompt"] == parse_hh(raw["prompt"] + " x", "prompt")[:-1]
        assert row["prompt"][0]["role"] == "user" and row["prompt"][-1]["role"] == "user"
        assert not row["chosen"].startswith(" ")
    assert src.prompts("train")[0]["prompt"] == ds[0]["prompt"]


@pytest.mark.skipif(not HH.exists(), reason="shared HH-RLHF slice not present")
def test_hh_rlhf_whole_file_with_skip():
    src = FilesDataSource(preferences=str(HH), on_bad_record="skip", eval_fraction=0)
    assert len(src.preferences("train")) + src.skipped["preferences"] == 500
    assert src.skipped["preferences"] <= 5
