"""One step of a pairwise policy loss (online DPO: Guo et al. 2024; TRL's ``OnlineDPOTrainer``).

The estimator marks each group's chosen (+1) and rejected (-1) response (``best_vs_worst``);
the step trains on those pairs alone, rows 2j and 2j+1, in ``trainer.grad_accum``
micro-batches and one optimizer step, the loss the mean over every process's pairs. Log-probs
are the model's own (temperature 1), as DPO's; there is no ratio, so no sampling-time forward.
"""

from __future__ import annotations

import time

import torch

from alignkit.core.rl import AdvantageInputs, PolicyLossInputs
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.reporting import rollout_metrics, sequence_tokens
from alignkit.plugins.rl.rollout import micro_batch, response_mask, select
from alignkit.plugins.rl.step import StepResult, Training
from alignkit.plugins.rl.update import step_unless_drifted, stop_if_diverged


def marked_pairs(advantages: torch.Tensor, group_size: int) -> list[tuple[int, int]]:
    """(chosen row, rejected row) of each group the estimator marked +1 / -1, in group order."""
    sign = advantages[:, 0].sign().tolist()
    pairs = []
    for g in range(len(sign) // group_size):
        rows = range(g * group_size, (g + 1) * group_size)
        chosen = [r for r in rows if sign[r] > 0]
        rejected = [r for r in rows if sign[r] < 0]
        if chosen and rejected:
            pairs.append((chosen[0], rejected[0]))
    return pairs


def divpo_pairs(t: Training, scores: torch.Tensor, responses: list[str]) -> list[tuple[int, int]]:
    """DivPO's pair of each group (Lanchantin et al. 2025; core/pair_selection.py)."""
    from alignkit.core.pair_selection import select_group_pairs

    return select_group_pairs(scores.tolist(), responses, t.o.samples_per_prompt, t.diversity, selection="divpo",
                              rho=t.o.divpo_rho)


def pair_marks(pairs: list[tuple[int, int]], mask: torch.Tensor) -> torch.Tensor:
    """The marks ``dpo_pairwise`` reads: +1 on each chosen row, -1 on each rejected row, 0 elsewhere."""
    marks = torch.zeros(mask.shape[0])
    for chosen, rejected in pairs:
        marks[chosen], marks[rejected] = 1.0, -1.0
    return marks.unsqueeze(1) * mask


def pairwise_step(t: Training, step: int) -> StepResult:
    o, device = t.o, t.acc.device
    started = time.perf_counter()
    policy = t.policy()
    batch = t.sampler.sample(policy, t.tokenizer, step, t.moments)
    rollout, scores = batch.rollout, batch.scores
    full_mask = response_mask(rollout.response_lengths)
    options = o.part_options(kl_coef=t.kl_ctl.value)
    advantages = t.estimator.estimate(AdvantageInputs(
        scores=scores, mask=full_mask, kl_penalty=torch.zeros_like(full_mask), group_size=o.samples_per_prompt,
        options=options, reducer=S.ProcessReducer())).advantages
    if o.pair_selection == "divpo":  # DivPO: the most diverse good answer vs the least diverse bad one
        pairs = divpo_pairs(t, scores, rollout.responses)
        advantages = pair_marks(pairs, full_mask)
    else:
        pairs = marked_pairs(advantages, o.samples_per_prompt)  # this process's rows
    total = S.global_sum(float(len(pairs)))
    real = [True] * len(pairs)
    if not pairs and total:  # every process joins the gradient all-reduce, with a stand-in pair (advantages 0)
        pairs, real = [(0, 1)], [False]
    rows = [r for pair in pairs for r in pair]  # chosen, rejected side by side
    sub = select(rollout, rows)
    mask = response_mask(sub.response_lengths).to(device)
    sub_advantages = advantages[rows, :mask.shape[1]].to(device) * torch.tensor(
        [float(r) for r in real for _ in (0, 1)], device=device).unsqueeze(1)

    t.model.eval()  # no dropout: the sampled and the trained policy are one function
    stats: dict[str, float] = {"update/optimizer_steps": 0}
    kl_rows = torch.zeros(len(rows))
    if total:
        ref = None
        if t.reference.exists:
            with torch.no_grad():
                ref = t.reference.logprobs(policy, sub, mask, 1.0)
        stats, kl_rows = _update(t, sub, mask, sub_advantages, ref, options, total, step)

    kept = torch.tensor(real, dtype=torch.bool)
    chosen_scores, rejected_scores = scores[rows[0::2]], scores[rows[1::2]]
    margin = S.global_sum(float((chosen_scores - rejected_scores)[kept].sum()))
    metrics = {
        **rollout_metrics(o, batch, t.sampler.scorer, started),
        "reward/pair_margin": margin / max(total, 1.0),  # chosen minus rejected score, over the trained pairs
        "pairs/trained": total,
        "rollout/sequence_tokens": sequence_tokens(sub),
        **stats,
    }
    if t.reference.exists and total:  # KL(policy || reference) per trained response (k1, summed over tokens)
        metrics["rollout/kl"] = S.global_sum(float(kl_rows.view(-1, 2)[kept].sum())) / (2 * total)
    # samples.jsonl: the trained pairs, chosen then rejected
    return StepResult(metrics, sub, scores[rows], kl_rows)


def _update(t: Training, sub, mask: torch.Tensor, advantages: torch.Tensor, ref: torch.Tensor | None,
            options: dict, total: float, step: int) -> tuple[dict[str, float], torch.Tensor]:
    """One optimizer step on the pairs, in micro-batches. Returns the metrics (means over every
    process's pairs) and each row's summed log-ratio to the reference (its sampled KL, k1)."""
    world = S.layout()[0]
    count = len(sub) // 2
    # every process takes the same number of backward passes (each one joins an all-reduce),
    # so the split follows the process with the fewest pairs
    micro = max(1, min(t.settings.grad_accum, -int(S.global_max(-float(count)))))
    kl_rows = torch.zeros(2 * count)
    sums: dict[str, float] = {}
    for part in (list(range(count))[i::micro] for i in range(micro)):
        rows_list = [r for j in part for r in (2 * j, 2 * j + 1)]
        rows, width, m, batch = micro_batch(sub, mask, rows_list)
        out = t.model(batch, m, 1.0, with_values=False)
        result = t.loss.loss(PolicyLossInputs(out.logprobs, out.logprobs.detach(), advantages[rows, :width], m,
                                              ref[rows, :width] if ref is not None else None, options))
        loss = (result.per_token * m).sum() / total
        stop_if_diverged(loss, t.stage, step, t.checkpoint_dir)
        t.acc.backward(loss * world)  # the all-reduce averages the processes' gradients
        if ref is not None:
            logps, ref_logps = (out.logprobs * m).sum(dim=1), (ref[rows, :width] * m).sum(dim=1)
            kl_rows[torch.tensor(rows_list)] = (logps - ref_logps).detach().float().cpu()
        pairs = result.metrics.get("pairs", 0.0)
        for key, value in result.metrics.items():
            if key != "pairs":
                sums[key] = sums.get(key, 0.0) + value * pairs
    out = {key: value / total for key, value in S.sum_over_processes(sums).items()}
    step_unless_drifted(out, 0.0, t.settings.max_grad_norm, t.acc, t.model, t.optimizer)
    out["update/optimizer_steps"] = 1
    return out, kl_rows
