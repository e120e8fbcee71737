"""``optimizer=online_dpo optimizer.pair_selection=divpo``: online DPO trains on DivPO's pair of
each prompt's samples (the most diverse good answer against the least diverse bad one) instead
of the first best against the first worst."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core import ConfigError
from alignkit.core.diversity import diversity_measure
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, compose
from alignkit.plugins.rl.options import parse, schema
from alignkit.plugins.rl.pairwise import divpo_pairs, marked_pairs, pair_marks

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"


def varied(prompt, response):
    """Spread inside every group: newlines, then length."""
    return min(response.count("\n"), 6) / 6 + 0.01 * (len(response) % 7)


def test_divpo_pairs_differ_from_best_vs_worst_where_diversity_says_so():
    # one group of 4: rows 0 and 1 score 1 (the chosen pool at rho 0.5), rows 2 and 3 score 0.
    # distinct-1: "a b c d" has b, c, d that no other answer has (3 of 4 words); "a a a a" none;
    # "x y z w" has y, z, w (3 of 4); "x x x x" none. Chosen: the most diverse good one, row 0;
    # rejected: the least diverse bad one, row 3. Best vs worst takes the first best (0) and the
    # first worst (2) instead.
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0])
    responses = ["a b c d", "a a a a", "x y z w", "x x x x"]
    t = SimpleNamespace(o=SimpleNamespace(samples_per_prompt=4, divpo_rho=0.5),
                        diversity=diversity_measure("distinct_n", n=1))
    assert divpo_pairs(t, scores, responses) == [(0, 3)]
    marks = pair_marks([(0, 3)], torch.ones(4, 2))
    assert marks.tolist() == [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [-1.0, -1.0]]
    assert marked_pairs(marks, 4) == [(0, 3)]  # what the pairwise step trains on


def test_divpo_needs_the_pairwise_loss_and_groups():
    with pytest.raises(ConfigError, match="pair_selection=divpo"):
        parse({"pair_selection": "divpo", "samples_per_prompt": 4}, schema("grpo"))
    with pytest.raises(ConfigError, match="divpo_rho"):
        parse({"pair_selection": "divpo", "divpo_rho": 0.8}, schema("online_dpo"))
    with pytest.raises(ConfigError, match="pair_selection must be one of"):
        parse({"pair_selection": "diverse"}, schema("online_dpo"))


def test_online_dpo_trains_on_divpo_pairs(registry, tmp_path):
    cfg = compose([*FAST_OVERRIDES, "pipeline=online_dpo", "data=files", f"data.prompts={PROMPTS}",
                   "preference_model=rule", f"preference_model.fn={__name__}:varied", "optimizer.eval_prompts=0",
                   "trainer.batch_size=8", "trainer.max_steps=2", "optimizer.max_new_tokens=6",
                   "optimizer.temperature=0.7", "optimizer.samples_per_prompt=4", "optimizer.pair_selection=divpo",
                   "optimizer.diversity_n=1", "optimizer.sample_every=1", "optimizer.samples_per_log=8",
                   "optimizer.trainer.learning_rate=1e-3"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    rd = run_pipeline(cfg, tmp_path / "run", registry)
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("stage") == "online_dpo" and "pairs/trained" in r]
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["pairs/trained"] >= 1 and s["reward/pair_margin"] > 0 for s in steps), steps
    samples = [json.loads(line) for line in (rd.path / "02-online_dpo" / "samples.jsonl").read_text().splitlines()]
    pairs = list(zip(samples[0::2], samples[1::2]))
    assert pairs and all(chosen["reward"] > rejected["reward"] for chosen, rejected in pairs)
