"""The shipped demo data: all three kinds, sizes, a clear signal, the math prompt sets, and a deterministic generator."""

import importlib.util
import re
import sys

import pytest

from alignkit.core import ConfigError
from alignkit.plugins.data.plugin import DEMO_DIR, DemoDataSource, demo_source


def test_demo_source_returns_all_three_kinds():
    src = demo_source({"name": "demo", "eval_fraction": 0.1, "seed": 0, "on_bad_record": "error"})
    sizes = {kind: (len(getattr(src, kind)("train")), len(getattr(src, kind)("eval")))
             for kind in ("sft", "preferences", "prompts")}
    assert sizes == {"sft": (270, 30), "preferences": (360, 40), "prompts": (90, 10)}
    assert src.skipped == {"sft": 0, "preferences": 0, "prompts": 0}
    assert src.formats == {"sft": "messages", "preferences": "preference", "prompts": "prompt"}
    assert src.sft("train").column_names == ["messages"]
    assert src.preferences("train").column_names == ["prompt", "chosen", "rejected", "strength", "source"]


def test_demo_preferences_have_a_clear_signal():
    pairs = DemoDataSource(eval_fraction=0).preferences("train")
    assert all(c != r for c, r in zip(pairs["chosen"], pairs["rejected"]))
    # Chosen answers are short; rejected ones are wrong, rambling or an unhelpful reply.
    assert max(len(c) for c in pairs["chosen"]) < 200
    longer = sum(len(r) > len(c) for c, r in zip(pairs["chosen"], pairs["rejected"]))
    assert longer > len(pairs) * 0.4
    arithmetic = [(p[-1]["content"], c) for p, c in zip(pairs["prompt"], pairs["chosen"]) if re.fullmatch(r"\d+ \+ \d+ = \d+\.", c)]
    assert arithmetic
    for _, chosen in arithmetic:
        a, b, total = map(int, re.findall(r"\d+", chosen))
        assert a + b == total


def test_demo_prompts_are_held_out():
    src = DemoDataSource(eval_fraction=0)
    held = {p[-1]["content"] for p in src.prompts("train")["prompt"]}
    seen = {m["content"] for conv in src.sft("train")["messages"] for m in conv if m["role"] == "user"}
    seen |= {p[-1]["content"] for p in src.preferences("train")["prompt"]}
    assert len(held) == 100 and not held & seen


def test_generator_reproduces_the_shipped_files(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("alignkit_make_demo", DEMO_DIR / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    sizes = module.write(tmp_path)
    assert sizes == {"sft.jsonl": 300, "preferences.jsonl": 400, "prompts.jsonl": 100,
                     "math_eval_prompts.jsonl": 120, "math_prompts.jsonl": 800}
    for name in sizes:
        assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes(), name


def test_the_math_prompt_set_is_verifiable_held_out_and_unseen():
    from alignkit.plugins.rules.demo import verifiable

    math = DemoDataSource(prompt_set="math")
    train, held_out = math.prompts("train"), math.prompts("eval")
    assert (len(train), len(held_out)) == (800, 120)
    texts = lambda rows: {row["prompt"][-1]["content"] for row in rows}  # noqa: E731
    assert all(verifiable(row["prompt"]) for row in list(train) + list(held_out))
    assert not texts(train) & texts(held_out)
    mixed = DemoDataSource()
    seen = texts(mixed.prompts("train")) | texts(mixed.prompts("eval")) | texts(mixed.preferences("train"))
    seen |= {m["content"] for row in mixed.sft("train") for m in row["messages"] if m["role"] == "user"}
    assert not (texts(train) | texts(held_out)) & seen  # no question the SFT model was trained or tested on
    assert len(math.sft("train")) == len(mixed.sft("train"))  # SFT and preference data as data=demo
    with pytest.raises(ConfigError, match="prompt_set must be one of mixed, math"):
        DemoDataSource(prompt_set="maths")
