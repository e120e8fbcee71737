"""``OptimizerContract`` on every built-in optimizer that trains: one tiny run each (``tiny-random``,
two steps, the contract's pairs), up to the optimizer's stage.

The on-policy ones score their samples with a rule that differs between random samples
(``variety``), so advantages and pairs are not all ties; PPO scores with the reward model the
session trains (conftest.py), through the contract's ``contract_overrides`` hook. ``orpo`` and
``cpo`` run the suite next to their own tests, which add checks of their stage's name. The stages
that sample, label or evaluate (``label``, ``evaluate``, ``best_of_n``, ``critique_revise``) train
nothing and promise something else.
"""

from pathlib import Path

import pytest

from alignkit.core.registry import Registry
from alignkit.core.testing import OptimizerContract, compose
from alignkit.core.testing.optimizers import _skip_the_stages_after

from .conftest import OnTheTrainedRewardModel

ROOT = Path(__file__).parents[2]


def variety(prompt, response):
    """Differs between random samples (so advantages are not all 0, pairs not all ties): distinct characters."""
    return float(len(set(response)))


ON_POLICY = ("preference_model=rule", f"preference_model.fn={__name__}:variety", "optimizer.max_new_tokens=4",
             "optimizer.eval_prompts=0")
GROUPS = (*ON_POLICY, "optimizer.samples_per_prompt=2")  # the group-relative ones: two samples a prompt

OPTIMIZERS = {
    "sft": {"pipeline": "sft", "data": ("sft",)},
    "dpo": {"overrides": ("optimizer.kl_prompts=0",)},  # no prompts in the contract's data
    # the policy is untouched: the stage's artifact is the reward model
    "reward": {"pipeline": "reward_model", "produces_model": False, "artifacts": ("reward_model",)},
    "ppo": {"pipeline": "ppo", "data": ("prompts",), "uses": OnTheTrainedRewardModel,
            "overrides": ("optimizer.max_new_tokens=4", "optimizer.eval_prompts=0")},
    "online_dpo": {"pipeline": "online_dpo", "data": ("prompts",), "overrides": ON_POLICY},
    **{name: {"pipeline": name, "data": ("prompts",), "overrides": GROUPS}
       for name in ("grpo", "rloo", "dr_grpo", "gspo", "reinforce_pp")},
    "dapo": {"pipeline": "dapo", "data": ("prompts",), "overrides": (*GROUPS, "optimizer.overlong_buffer=2")},
}
"""Each optimizer's pipeline, data and what it declares about itself (``OptimizerContract`` attributes)."""

ELSEWHERE = {name: ROOT / "tests/plugins/reference_free/test_optimizers.py" for name in ("orpo", "cpo")}
"""Optimizers whose suite runs in their plugin's tests."""

STAGES = {"label", "evaluate", "best_of_n", "critique_revise"}
"""Registered beside the optimizers until stages have their own registry: they train nothing."""


def _generate():
    for name, settings in OPTIMIZERS.items():
        settings = dict(settings)
        bases = (settings.pop("uses"),) if "uses" in settings else ()
        title = "".join(part.capitalize() for part in name.split("_"))
        cls = type(f"Test{title}IsAnOptimizer", (*bases, OptimizerContract),
                   {"name": name, "__module__": __name__, **settings})
        globals()[cls.__name__] = cls


_generate()


def test_every_optimizer_that_trains_runs_the_contract():
    registered = set(Registry().components("optimizer")) - STAGES
    missing = sorted(registered - set(OPTIMIZERS) - set(ELSEWHERE))
    assert not missing, f"no OptimizerContract for {missing}: add them to OPTIMIZERS"
    assert not sorted(set(OPTIMIZERS) - registered), "OPTIMIZERS names an optimizer that is not registered"
    for name, path in ELSEWHERE.items():
        text = path.read_text()
        assert "OptimizerContract" in text and f'name = "{name}"' in text, f"{path} runs no suite on '{name}'"


@pytest.mark.parametrize(("overrides", "skipped"), [
    (["pipeline=dpo"], ["evaluate"]),
    (["pipeline=rlhf", "optimizer=ppo"], ["evaluate"]),
    (["pipeline=reward_model", "optimizer=reward"], []),
])
def test_the_contract_skips_the_stages_after_the_optimizers(overrides, skipped):
    """The closing evaluate checks nothing the contract asks: the contract's run leaves it out."""
    cfg = compose(overrides)
    _skip_the_stages_after(cfg, str(cfg.optimizer.name))
    assert list(cfg.pipeline.get("skip") or []) == skipped


def test_a_stage_of_its_own_name_before_the_optimizer_keeps_what_follows():
    """In rlhf the reward stage runs before PPO: PPO and evaluate are skipped, not the reward stage."""
    cfg = compose(["pipeline=rlhf"])
    _skip_the_stages_after(cfg, "reward")
    assert list(cfg.pipeline.skip) == ["ppo", "evaluate"]
