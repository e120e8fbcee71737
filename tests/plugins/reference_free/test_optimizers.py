"""The ``orpo`` and ``cpo`` optimizers: the optimizer contract on a real tiny run, the batch loss
wired to the right log-probs, config errors, and the dpo pipeline's stage named after them."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from alignkit.core import ConfigError
from alignkit.core.engine import TrainerConfig
from alignkit.core.lm import encode_prompt_response
from alignkit.core.pipeline import stage_plan
from alignkit.core.testing import CONTRACT_PAIRS, OptimizerContract, compose
from alignkit.plugins.dpo.dpo import encode_pairs
from alignkit.plugins.reference_free.cpo import CPOConfig, CPOOptimizer, cpo_objective
from alignkit.plugins.reference_free.orpo import ORPOConfig, ORPOOptimizer, orpo_objective
from alignkit.plugins.reference_free.task import ReferenceFreeTask


class _NamedAfterItself:
    """The dpo pipeline's training stage is called after the optimizer: folder and summary key."""

    def test_the_stage_is_named_after_the_optimizer(self, contract_run):
        rd, _, _ = contract_run
        assert list(rd.summary["stages"]) == ["sft", self.name, "evaluate"]
        assert (rd.path / f"02-{self.name}" / "DONE").exists()
        assert rd.summary["stages"][self.name]["artifacts"] == {"model": f"02-{self.name}/model"}


class TestORPOIsAnOptimizer(_NamedAfterItself, OptimizerContract):
    name = "orpo"


class TestCPOIsAnOptimizer(_NamedAfterItself, OptimizerContract):
    name = "cpo"
    overrides = ("optimizer.loss_type=simpo", "optimizer.cpo_alpha=0.5")  # the per-token form, end to end


# ----------------------------------------------------------------------------- the batch loss

def _pairs(tokenizer):
    rows = [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in CONTRACT_PAIRS[:3]]
    pairs, dropped = encode_pairs(tokenizer, rows, 128)
    assert dropped == 0
    return rows, pairs


def _padded_logps(model, tokenizer, prompt, response) -> tuple[float, int]:
    """Summed log-prob of the response tokens and their count, from one unpacked forward."""
    enc = encode_prompt_response(tokenizer, prompt, response, 128)
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
    picked = logps[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    mask = torch.tensor(enc.scored[1:])
    return float(picked[mask].sum()), int(mask.sum())


def _batch_and_padded_logps(tiny_model, objective):
    """The task's loss and metrics on three pairs, and each pair's (summed log-prob, tokens) for
    chosen and rejected from unpacked forwards, with the batch's token-mean chosen NLL."""
    tok, model = tiny_model.tokenizer, tiny_model.model
    rows, pairs = _pairs(tok)
    task = ReferenceFreeTask(objective, pairs, [], TrainerConfig(batch_size=3), 16)
    with torch.no_grad():
        loss, metrics = task.loss(model, [0, 1, 2])
    chosen = [_padded_logps(model, tok, r["prompt"], r["chosen"]) for r in rows]
    rejected = [_padded_logps(model, tok, r["prompt"], r["rejected"]) for r in rows]
    # NLL: every chosen-response token of the batch counts once (not a mean of per-pair means)
    nll = -sum(s for s, _ in chosen) / sum(n for _, n in chosen)
    return loss.item(), metrics, chosen, rejected, nll


def test_orpo_batch_loss_uses_mean_log_probs_and_the_token_mean_nll(tiny_model):
    loss, metrics, chosen, rejected, nll = _batch_and_padded_logps(
        tiny_model, partial(orpo_objective, ORPOConfig(beta=0.3)))
    odds_terms = []
    for (sw, nw), (sl, nl) in zip(chosen, rejected):
        lw, ll = sw / nw, sl / nl
        log_odds = (lw - ll) - (math.log(1 - math.exp(lw)) - math.log(1 - math.exp(ll)))
        odds_terms.append(math.log(1 + math.exp(-log_odds)))  # -log sigmoid(log_odds)
    assert loss == pytest.approx(nll + 0.3 * sum(odds_terms) / 3, rel=1e-4)
    assert metrics["nll"] == pytest.approx(nll, rel=1e-4)
    assert metrics["odds_ratio_term"] == pytest.approx(sum(odds_terms) / 3, rel=1e-4)


def test_cpo_batch_loss_uses_summed_log_probs(tiny_model):
    loss, metrics, chosen, rejected, nll = _batch_and_padded_logps(
        tiny_model, partial(cpo_objective, CPOConfig(beta=0.05, cpo_alpha=2.0)))
    preference = [math.log(1 + math.exp(-0.05 * (sw - sl))) for (sw, _), (sl, _) in zip(chosen, rejected)]
    assert loss == pytest.approx(sum(preference) / 3 + 2.0 * nll, rel=1e-4)
    assert metrics["rewards/chosen"] == pytest.approx(0.05 * sum(s for s, _ in chosen) / 3, rel=1e-4)


def test_held_out_metrics_are_weighted_by_pairs(tiny_model):
    tok, model = tiny_model.tokenizer, tiny_model.model
    _, pairs = _pairs(tok)
    objective = partial(orpo_objective, ORPOConfig())
    whole = ReferenceFreeTask(objective, pairs, pairs, TrainerConfig(), eval_batch_size=3).evaluate(model)
    chunked = ReferenceFreeTask(objective, pairs, pairs, TrainerConfig(), eval_batch_size=2).evaluate(model)
    assert whole["eval/pairs"] == chunked["eval/pairs"] == 3
    # chunks of 2 and 1: per-pair metrics average to the same value as one chunk of 3
    assert chunked["eval/logps/chosen"] == pytest.approx(whole["eval/logps/chosen"], rel=1e-5)
    assert chunked["eval/odds_ratio_term"] == pytest.approx(whole["eval/odds_ratio_term"], rel=1e-5)


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("factory, options, message", [
    (CPOOptimizer, {"loss_type": "kto"}, "loss_type"),
    (CPOOptimizer, {"loss_type": "hinge", "label_smoothing": 0.1}, "label_smoothing"),
    (CPOOptimizer, {"cpo_alpha": -1.0}, "cpo_alpha"),
    (ORPOOptimizer, {"beta": 0.0}, "beta"),
])
def test_a_bad_option_is_a_config_error_naming_it(factory, options, message, registry):
    from alignkit.core.options import build_component

    name = "cpo" if factory is CPOOptimizer else "orpo"
    with pytest.raises(ConfigError, match=f"optimizer=.*{message}"):
        build_component(registry, "optimizer", name, OmegaConf.create({"name": name, **options}), None,
                        group="optimizer")


@pytest.mark.parametrize("name, schema", [("orpo", ORPOConfig), ("cpo", CPOConfig)])
def test_the_config_file_lists_every_option_at_its_schema_default(name, schema):
    """The dataclass declares the defaults; the YAML pulls them in and sets only what differs."""
    from importlib.resources import files

    listed = yaml.safe_load(files("alignkit.conf").joinpath("optimizer", f"{name}.yaml").read_text())
    assert listed.pop("name") == name
    # the rest comes from the dataclass through Hydra's config store (core/config_defaults.py)
    assert listed.pop("defaults") == [f"/dataclass_defaults/optimizer/{name}@_here_", "_self_"]
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    assert set(listed) <= set(defaults) | {"trainer"}
    assert all(listed[k] == defaults[k] for k in listed if k != "trainer")


# ----------------------------------------------------------------------------- stage names

def _stage_names(*overrides):
    return [str(stage.name) for stage in stage_plan(compose(["pipeline=dpo", *overrides]))]


@pytest.mark.parametrize("optimizer", ["orpo", "cpo"])
def test_the_dpo_pipeline_names_its_training_stage_after_the_optimizer(optimizer):
    assert _stage_names(f"optimizer={optimizer}") == ["sft", optimizer, "evaluate"]


def test_a_dpo_run_keeps_its_stage_name_and_so_resumes():
    # run directories made before (02-dpo, summary key dpo) are found again by the same command
    assert _stage_names() == _stage_names("optimizer=dpo") == ["sft", "dpo", "evaluate"]


def test_an_old_run_of_another_optimizer_keeps_its_name_with_one_override():
    # e.g. a KTO run made when the stage was always called dpo (see docs/configuration.md)
    assert _stage_names("optimizer=orpo", "pipeline.stages.1.name=dpo") == ["sft", "dpo", "evaluate"]


# ----------------------------------------------------------------------------- soft labels

@pytest.mark.parametrize("optimizer", ["orpo", "cpo"])
def test_soft_labels_are_refused_before_the_model_loads(optimizer, tmp_path, registry, monkeypatch):
    import json

    from alignkit.core.pipeline import StageContext, run_pipeline
    from alignkit.core.testing import FAST_OVERRIDES

    rows = [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in CONTRACT_PAIRS[:4]]
    rows[1]["strength"] = 0.5  # a tie kept by label.keep_ties=true
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the soft labels were refused")

    monkeypatch.setattr(StageContext, "load_model", no_model)
    cfg = compose([*FAST_OVERRIDES, "pipeline=dpo", f"optimizer={optimizer}", "data=files",
                   f"data.preferences={data}"], registry)
    with pytest.raises(ConfigError, match=rf"optimizer={optimizer} has no soft-label form.*1 train"):
        run_pipeline(cfg, tmp_path / "run", registry)
