"""The ``dpo`` stage on tiny-random, run directly (no SFT or evaluate stage): the reference
log-prob cache's counts, and how pairs with soft labels (``strength`` < 1) reach each loss."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from omegaconf import OmegaConf

from alignkit.core.errors import ConfigError
from alignkit.core.testing import FAST_OVERRIDES, compose

PROMPT = [{"role": "user", "content": "Name a colour."}]


def row(chosen: str, rejected: str, strength: float | None = None) -> dict:
    out = {"prompt": PROMPT, "chosen": chosen, "rejected": rejected}
    if strength is not None:
        out["strength"] = strength
    return out


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def dpo_stage(tmp_path, registry):
    """``dpo_stage(train_rows, eval_rows, *overrides)`` -> (optimizer, StageContext) of a dpo stage."""
    from alignkit.core.pipeline import RunContext, StageContext
    from alignkit.core.rundir import RunDir
    from alignkit.core.options import build_component

    runs = iter(range(100))

    def _make(train_rows, eval_rows, *overrides):
        n = next(runs)
        train = write(tmp_path / f"train{n}.jsonl", train_rows)
        held_out = write(tmp_path / f"eval{n}.jsonl", eval_rows)
        cfg = compose([*FAST_OVERRIDES, "pipeline=dpo", "data=files", f"data.preferences={train}",
                       f"data.eval_preferences={held_out}", "optimizer.kl_prompts=0",
                       f"optimizer.cache_dir={tmp_path / 'reference_cache'}", *overrides], registry)
        run = RunContext(cfg, registry, RunDir(tmp_path / f"run{n}", pipeline="dpo"))
        folder = tmp_path / f"run{n}" / "01-dpo"
        folder.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(run=run, name="dpo", index=1, dir=folder, config=cfg.optimizer, trainer=cfg.trainer,
                           policy=run.model_spec(), previous={})
        options = OmegaConf.to_container(cfg.optimizer, resolve=True)
        options.pop("trainer", None)  # the optimizer file's own trainer node (lr); FAST_OVERRIDES set the rest
        return build_component(registry, "optimizer", "dpo", options, ctx), ctx

    return _make


def cache_lines(caplog):
    return [r.getMessage() for r in caplog.records if "reference log-probs:" in r.getMessage()]


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_reference_cache_counts_each_distinct_pair_once(dpo_stage, caplog):
    # train: A, A (a duplicate row), B, C; held out: C (also in train), D -> 4 distinct pairs.
    # 2 steps of batch 2 use all 4 training rows, so the cache is asked for A A B C C D.
    # Before the fix: "6 computed, -2 reused" (duplicates computed and counted twice).
    a, b, c, d = row("Red.", "Blue sky."), row("Green.", "Um."), row("Teal.", "No."), row("Pink.", "Hm?")
    caplog.set_level(logging.INFO, logger="alignkit")
    optimizer, ctx = dpo_stage([a, a, b, c], [c, d])
    first = optimizer.run(ctx).metrics
    (line,) = cache_lines(caplog)
    assert "4 computed, 0 reused" in line, line
    assert (first["reference/computed_pairs"], first["reference/reused_pairs"]) == (4, 0)
    cache_file = line.rsplit(" from ", 1)[1]
    assert len(json.loads(open(cache_file).read())) == 4

    caplog.clear()  # a rerun (a sweep over beta) with the same reference model reuses all four
    optimizer, ctx = dpo_stage([a, a, b, c], [c, d], "optimizer.beta=0.5")
    second = optimizer.run(ctx).metrics
    (line,) = cache_lines(caplog)
    assert "0 computed, 4 reused" in line, line
    assert (second["reference/computed_pairs"], second["reference/reused_pairs"]) == (0, 4)


@pytest.mark.parametrize("loss_type", ["hinge", "simpo"])
def test_soft_labels_are_refused_before_a_model_is_loaded(dpo_stage, monkeypatch, loss_type):
    from alignkit.core.pipeline import StageContext

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the soft labels were refused")

    monkeypatch.setattr(StageContext, "load_model", no_model)
    optimizer, ctx = dpo_stage([row("Red.", "Blue."), row("Green.", "Um.", 0.5)], [row("Teal.", "No.", 0.7)],
                               f"optimizer.loss_type={loss_type}")
    with pytest.raises(ConfigError, match=rf"optimizer.loss_type={loss_type} has no soft-label form.*1 train, 1 eval "
                                          r"pairs.*one of sigmoid, cdpo, robust, ipo, rdpo, or hard labels"):
        optimizer.run(ctx)


def test_hard_labels_still_train_under_hinge(dpo_stage):
    optimizer, ctx = dpo_stage([row("Red.", "Blue."), row("Green.", "Um.", 1.0)], [row("Teal.", "No.")],
                               "optimizer.loss_type=hinge")
    optimizer.check_soft_labels({"train": ctx.dataset("preferences", "train"),
                                 "eval": ctx.dataset("preferences", "eval")})  # does not raise


def test_the_trainer_hands_ties_to_ipo(dpo_stage):
    # policy == reference -> h = 0. IPO, beta 0.1: a tie's target (2*0.5 - 1)/0.2 = 0 -> loss 0;
    # a hard label's target 1/0.2 = 5 -> (0 - 5)^2 = 25 (before the fix the tie cost 25 too)
    from alignkit.plugins.dpo.dpo import DPOTask, encode_pairs, pair_logps

    tie_loss, hard_loss = 0.0, 25.0
    optimizer, ctx = dpo_stage([row("Red.", "Blue.", 0.5), row("Green.", "Um.")], [row("Teal.", "No.")],
                               "optimizer.loss_type=ipo", "optimizer.beta=0.1")
    loaded = ctx.load_model("policy")
    pairs, _ = encode_pairs(loaded.tokenizer, ctx.dataset("preferences", "train"), 96)
    assert [p.strength for p in pairs] == [0.5, 1.0]
    model = loaded.model.eval()

    @torch.no_grad()
    def reference(chunk):  # the policy itself: every margin h is exactly 0
        chosen, rejected, _, _ = pair_logps(model, chunk)
        return chosen, rejected

    task = DPOTask(optimizer, pairs, [], ctx.trainer_settings(), reference)
    with torch.no_grad():
        tie, _ = task._metrics(model, pairs[:1])
        hard, _ = task._metrics(model, pairs[1:])
    assert tie.item() == pytest.approx(tie_loss, abs=1e-5)
    assert hard.item() == pytest.approx(hard_loss, abs=1e-4)
