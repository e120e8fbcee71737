"""Golden runs: the on-policy optimizers' every logged value, recorded from fixed-seed
tiny-random runs before the RL loop was rebuilt out of registered parts (issue 19), must be
reproduced by the rebuilt loop to 1e-6.

Record (only when the numbers are meant to change, and say why in the commit):
``ALIGNKIT_RECORD_GOLDEN=1 pytest tests/plugins/rl/test_golden_runs.py``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, compose

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"
GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("ALIGNKIT_RECORD_GOLDEN") == "1"
# wall-clock and throughput figures differ on every run; everything else is compared
UNTIMED = ("time/", "seconds", "step_seconds")


def varied(prompt, response):
    """A rule reward with spread inside a group: newlines, then length, so no group ties."""
    return min(response.count("\n"), 6) / 6 + 0.01 * (len(response) % 7)


RUNS = {
    "ppo": ["pipeline=ppo", "optimizer.ppo_epochs=2", "optimizer.mini_batch_size=4", "optimizer.eval_prompts=4",
            "optimizer.trainer.learning_rate=2e-4"],
    "ppo_shared_adaptive": ["pipeline=ppo", "optimizer.critic=shared", "optimizer.adaptive_kl=true",
                            "optimizer.reward_normalize=true", "optimizer.reward_clip=0.8",
                            "optimizer.missing_eos_penalty=0.1", "optimizer.entropy_coef=0.01",
                            "optimizer.trainer.learning_rate=2e-4", "trainer.grad_accum=2"],
    "grpo": ["pipeline=grpo", "optimizer.update_epochs=2", "optimizer.mini_batch_size=4",
             "optimizer.eval_prompts=4", "optimizer.trainer.learning_rate=3e-4"],
    "grpo_dr_sequence": ["pipeline=grpo", "optimizer.scale_rewards=false", "optimizer.loss_aggregation=sequence",
                         "optimizer.trainer.learning_rate=3e-4", "optimizer.entropy_coef=0.01"],
    # recorded with the token-level ratio, rloo's only one then; rloo now defaults to TRL's sequence level
    "rloo": ["pipeline=rloo", "optimizer.ratio_level=token", "optimizer.trainer.learning_rate=3e-4",
             "optimizer.eval_prompts=4"],
    "rloo_k3_normalized": ["pipeline=rloo", "optimizer.ratio_level=token", "optimizer.kl_estimator=k3", "optimizer.normalize_advantages=true",
                           "optimizer.reward_normalize=true", "optimizer.update_epochs=2",
                           "optimizer.trainer.learning_rate=3e-4", "trainer.grad_accum=2"],
    "online_dpo": ["pipeline=online_dpo", "optimizer.samples_per_prompt=4", "optimizer.trainer.learning_rate=1e-3",
                   "optimizer.eval_prompts=4"],
    "online_dpo_ipo_keep": ["pipeline=online_dpo", "optimizer.loss_type=ipo", "optimizer.ties=keep",
                            "optimizer.trainer.learning_rate=1e-3", "trainer.grad_accum=2"],
}


def run(registry, run_dir: Path, overrides: list[str]) -> list[dict]:
    cfg = compose([*FAST_OVERRIDES, "data=files", f"data.prompts={PROMPTS}", "preference_model=rule",
                   f"preference_model.fn={__name__}:varied", "optimizer.eval_prompts=0", "trainer.batch_size=8",
                   "trainer.max_steps=3", "optimizer.max_new_tokens=6", "optimizer.temperature=0.7",
                   "optimizer.sample_every=0", *overrides], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    rd = run_pipeline(cfg, run_dir, registry)
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    stage = cfg.pipeline.stages[-1].name
    out = []
    for row in rows:
        if row.get("stage") != stage:
            continue
        out.append({k: v for k, v in row.items() if k not in ("time", "timestamp", "wall")
                    and not any(k.startswith(p) or k.endswith(p) for p in UNTIMED)})
    summary = json.loads((rd.path / "summary.json").read_text())["stages"][stage]["metrics"]
    out.append({"summary": {k: v for k, v in summary.items()
                            if not any(k.startswith(p) or k.endswith(p) or f"/{p}" in k for p in UNTIMED)}})
    return out


def close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return a == b


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_rl_loop_reproduces_the_golden_run(registry, tmp_path, name):
    rows = run(registry, tmp_path / name, RUNS[name])
    path = GOLDEN / f"{name}.json"
    if RECORD:
        path.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
        return
    golden = json.loads(path.read_text())
    assert len(rows) == len(golden), f"{name}: {len(rows)} logged rows, golden has {len(golden)}"
    for i, (got, want) in enumerate(zip(rows, golden)):
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        assert not missing, f"{name} row {i}: metrics no longer logged: {missing}"
        assert not extra, f"{name} row {i}: new metrics {extra} (record the golden again if intended)"
        differ = {k: (got[k], want[k]) for k in want if not close(got[k], want[k])}
        assert not differ, f"{name} row {i} differs from the golden run: {differ}"
