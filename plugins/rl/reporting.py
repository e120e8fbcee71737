"""What the RL loop reports: the step's rollout metrics, the held-out evaluation before and
after training, and the sample completions written to ``samples.jsonl``."""

from __future__ import annotations

import time
from typing import Any

import torch

from alignkit.core.engine import TrainerConfig
from alignkit.core.interfaces import score_metrics
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.options import RLOptions
from alignkit.plugins.rl.rollout import PromptPool, Rollout, generate
from alignkit.plugins.rl.sampling import ScoredBatch
from alignkit.plugins.rl.shaping import tied_groups


def rollout_metrics(o: RLOptions, batch: ScoredBatch, scorer: Any, started: float) -> dict[str, float]:
    """The step's scores, lengths and timings, over every process's rows."""
    raw, rollout = batch.raw, batch.rollout
    lengths = S.gather_cat(rollout.response_lengths)
    generate_seconds = S.global_max(rollout.seconds)
    metrics = {
        "reward/mean": float(raw.mean()),
        "reward/std": float(raw.std()) if len(raw) > 1 else 0.0,
        "rollout/response_length_mean": float(lengths.float().mean()),
        "rollout/responses_per_process": float(len(rollout)),
        "rollout/truncated_fraction": float(batch.truncated.float().mean()),
        "time/generate_seconds": generate_seconds,
        "time/step_seconds": S.global_max(time.perf_counter() - started),
        "time/generated_tokens_per_second": int(lengths.sum()) / max(generate_seconds, 1e-9),
        **batch.metrics,
        **score_metrics(scorer),  # a composite's members, combined score, lambda (this process's batch)
    }
    if o.samples_per_prompt > 1:
        metrics["reward/zero_std_fraction"] = float(tied_groups(raw, o.samples_per_prompt).float().mean())
    return metrics


def sequence_tokens(rollout: Rollout) -> float:
    """Prompt and response tokens the update trains on, over every process."""
    return S.global_sum(sum(len(s.input_ids) for s in rollout.sequences))


def evaluate(o: RLOptions, settings: TrainerConfig, policy: Any, tokenizer: Any, pool: PromptPool, scorer: Any,
             generator: Any) -> dict[str, float]:
    """Mean score on held-out prompts (greedy by default), before and after training."""
    rollout = generate(policy, tokenizer, pool, list(range(len(pool))), max_new_tokens=o.max_new_tokens,
                       temperature=o.eval_temperature, top_p=1.0, seed=settings.seed,
                       batch_size=o.generation_batch_size, generator=generator)
    scores = torch.as_tensor(scorer.score(rollout.prompts, rollout.responses), dtype=torch.float32)
    return {"reward_mean": float(scores.mean()), "length_mean": float(rollout.response_lengths.float().mean()),
            "truncated_fraction": float(rollout.truncated.float().mean()), "prompts": len(pool),
            **score_metrics(scorer)}


def sample_rows(o: RLOptions, step: int, rollout: Rollout, scores: torch.Tensor, kl_seq: torch.Tensor) -> list[dict]:
    """The first ``samples_per_log`` responses of this process's rollout, with score and KL."""
    rows = []
    for i in range(min(o.samples_per_log, len(rollout))):
        prompt = rollout.prompts[i]
        text = prompt[-1]["content"] if prompt and isinstance(prompt[-1], dict) else str(prompt)
        rows.append({"step": step, "prompt": text, "response": rollout.responses[i],
                     "reward": round(float(scores[i]), 4), "kl": round(float(kl_seq[i]), 4),
                     "truncated": bool(rollout.truncated[i])})
    return rows
