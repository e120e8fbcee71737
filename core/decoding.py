"""A KV-cached sampling loop of our own (``generation=kv``), for the speed of RL rollouts.

``model.generate`` spends much of a small model's step outside the model: its
``torch.multinomial`` over a 49k vocabulary cost ~20 ms per step for 16 rows on one CPU thread,
more than tiny-random's whole forward. This loop keeps the step to what it needs:

* one forward per step over a transformers ``DynamicCache``, projecting the vocabulary at the
  last position only (``logits_to_keep=1``, also for the prompt forward);
* sampling by inverse CDF (float64 cumulative sums, two levels, and ``searchsorted``): an
  exact draw from the categorical distribution, ~1 ms where ``multinomial`` took ~20; ``top_p`` sorts only
  when it is below 1; ``top_k`` is never applied (the full distribution, as ``TransformersGenerator``);
* rows that finished (a stop id) leave the batch and their cache at once;
* prompts sorted by length and cut into batches by a token budget (rows x (longest prompt +
  ``max_new_tokens``)), so padding is small and memory bounded whatever the call's size.

A call with a ``seed`` draws from its own ``torch.Generator`` and leaves the global random
state alone. Greedy decoding (``temperature`` 0) picks the argmax, token for token what
``generate(do_sample=False)`` picks on the same padded batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from alignkit.core.batch_tokens import DEFAULT_BATCH_TOKENS
from alignkit.core.lm import _unwrap

CDF_BLOCK = 256  # tokens per block of the two-level inverse CDF (49152 = 192 blocks)


@dataclass
class Decoded:
    """New tokens per prompt (in the caller's order; a row ends at its first stop id, kept) and,
    per token, its log-probability under the model's softmax at ``temperature`` (1 when greedy):
    ``log_softmax(logits / temperature)``, what the training forward computes, before ``top_p``
    or the ``min_new_tokens`` ban of stop ids reshape the distribution that is sampled."""

    tokens: list[list[int]]
    logps: list[list[float]]


def inverse_cdf(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The token of each row of [B, V] non-negative ``weights`` (need not sum to one) that a
    uniform in [0, 1) ([B, 1], float64) falls on: the first whose cumulative weight exceeds
    ``uniform`` x total.

    In two levels, so that no cumulative sum runs over the whole vocabulary (a float64 cumsum of
    49k entries per row cost more than the rest of the step): the block of ``CDF_BLOCK`` tokens
    from the cumulative block sums, then the token inside that block. ``right=True``: a uniform
    of exactly 0 lands past every leading zero-weight block and token, so a token of weight 0 is
    never drawn. Block totals are summed in float32 (the weights' own precision; ~1e-7 of a
    block's mass), the cumulative sums in float64.
    """
    rows, vocab = weights.shape
    if vocab % CDF_BLOCK:
        weights = torch.nn.functional.pad(weights, (0, CDF_BLOCK - vocab % CDF_BLOCK))
    blocks = weights.reshape(rows, -1, CDF_BLOCK)
    block_cdf = blocks.sum(-1).double().cumsum_(-1)  # [B, blocks]; a float64 sum of 49k is 20x slower
    target = uniforms * block_cdf[:, -1:]                                               # [B, 1]
    block = torch.searchsorted(block_cdf, target, right=True).clamp_max_(block_cdf.shape[1] - 1)
    before = block_cdf.gather(1, (block - 1).clamp_min(0)).masked_fill_(block == 0, 0.0)
    inner = blocks.gather(1, block.unsqueeze(-1).expand(-1, 1, CDF_BLOCK)).squeeze(1).cumsum(-1, dtype=torch.float64)
    # the two sums round differently: keep the remainder inside the block's own total
    rest = torch.minimum(target - before, inner[:, -1:] * (1 - 2.0 ** -52))
    offset = torch.searchsorted(inner, rest, right=True).clamp_max_(CDF_BLOCK - 1)
    return (block * CDF_BLOCK + offset).clamp_max_(vocab - 1).squeeze(1)


def sample_tokens(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of [B, V] weights: a categorical sample by inverse CDF (exact up to the
    float32 rounding of the weights), much faster than ``torch.multinomial`` over a 49k
    vocabulary on a CPU."""
    uniforms = torch.rand(weights.shape[0], 1, dtype=torch.float64, device=weights.device, generator=generator)
    return inverse_cdf(weights, uniforms)


def next_tokens(logits: torch.Tensor, *, temperature: float, top_p: float = 1.0, banned: Sequence[int] = (),
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The next token of each row of [B, V] logits, and its log-prob (see ``Decoded``).

    ``banned`` ids get no probability (stop ids before ``min_new_tokens``). ``logits`` may be
    overwritten: pass a tensor the caller owns.
    """
    scaled = logits.float()
    if temperature > 0 and temperature != 1:
        scaled.div_(temperature)
    probs = torch.softmax(scaled, dim=-1)  # one fused pass; logsumexp then exp took twice as long
    if temperature <= 0:
        pick = scaled
        if banned:
            pick = scaled.clone()
            pick[:, list(banned)] = float("-inf")
        tokens = pick.argmax(dim=-1)
    else:
        weights = probs
        if banned:  # in place: a banned token is never drawn, so the drawn tokens' probabilities stay
            weights[:, list(banned)] = 0.0
        if top_p < 1.0:
            # the smallest set of likeliest tokens whose mass reaches top_p (at least one token)
            sorted_probs, order = weights.sort(dim=-1, descending=True)
            mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
            sorted_probs.masked_fill_(mass_before >= top_p * sorted_probs.sum(-1, keepdim=True), 0.0)
            tokens = order.gather(1, sample_tokens(sorted_probs, generator).unsqueeze(1)).squeeze(1)
        else:
            tokens = sample_tokens(weights, generator)
    logps = probs.gather(1, tokens.unsqueeze(1)).squeeze(1).log()
    under = logps.isneginf()  # a probability that underflowed (greedy past banned ids): exactly, for those rows
    if bool(under.any()):
        rows = under.nonzero().squeeze(1)
        logps[rows] = scaled[rows].gather(1, tokens[rows].unsqueeze(1)).squeeze(1) - torch.logsumexp(scaled[rows], -1)
    return tokens, logps


def token_budget_batches(lengths: Sequence[int], max_new_tokens: int, batch_tokens: int) -> list[list[int]]:
    """Prompt indices sorted by length (longest first), cut so that each batch's rows x (its
    longest prompt + ``max_new_tokens``) stays within ``batch_tokens`` (a batch has at least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            width = lengths[batch[0]] + max_new_tokens  # the first row of a batch is its longest
            if (len(batch) + 1) * width <= batch_tokens:
                batch.append(i)
                continue
        batches.append([i])
    return batches


def _cache_keyword(model: Any) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns until 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def decode_batch(model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int, temperature: float,
                 top_p: float, stop_ids: Sequence[int], pad_id: int, min_new_tokens: int = 0,
                 generator: torch.Generator | None = None, drop_finished: bool = True) -> Decoded:
    """Decode one left-padded batch: positions count real tokens only (cumsum of the attention
    mask - 1), and a finished row leaves the batch (``DynamicCache.batch_select_indices``)."""
    from transformers import DynamicCache

    base = _unwrap(model)
    device = next(base.parameters()).device
    n = len(prompt_ids)
    tokens: list[list[int]] = [[] for _ in range(n)]
    logps: list[list[float]] = [[] for _ in range(n)]
    if n == 0 or max_new_tokens <= 0:
        return Decoded(tokens, logps)
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        if not ids:
            raise ValueError("generation: an empty prompt has nothing to continue (give every prompt a token)")
        input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, width - len(ids):] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp_min_(0)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    banned = sorted(set(stop_ids))
    cache = DynamicCache(config=base.config)
    keyword = _cache_keyword(base)
    rows = torch.arange(n, device=device)  # which prompt each batch row is
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        out = base(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                   logits_to_keep=1, **{keyword: cache})
        chosen, chosen_logps = next_tokens(out.logits[:, -1], temperature=temperature, top_p=top_p,
                                           banned=banned if step < min_new_tokens else (), generator=generator)
        for row, token, logp, over in zip(rows.tolist(), chosen.tolist(), chosen_logps.tolist(), finished.tolist()):
            if not over:
                tokens[row].append(token)
                logps[row].append(logp)
        if step + 1 == max_new_tokens:
            break
        if len(stops):
            finished |= torch.isin(chosen, stops)
        if bool(finished.any()):
            if bool(finished.all()):
                break
            if drop_finished:
                keep = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, chosen, attention, positions = rows[keep], chosen[keep], attention[keep], positions[keep]
                finished = finished[keep]
        # rows kept after their stop (drop_finished=False) are fed padding, masked out
        input_ids = chosen.masked_fill(finished, pad_id).unsqueeze(1)
        attention = torch.cat([attention, (~finished).long().unsqueeze(1)], dim=1)
        positions = positions[:, -1:] + 1
    return Decoded(tokens, logps)


def decode(model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int, temperature: float,
           top_p: float = 1.0, stop_ids: Sequence[int] = (), pad_id: int = 0, min_new_tokens: int = 0,
           seed: int | None = None, batch_tokens: int = DEFAULT_BATCH_TOKENS, drop_finished: bool = True) -> Decoded:
    """Decode every prompt, in token-budget batches of similar lengths; results in the caller's order.

    ``seed``: this call's own ``torch.Generator`` (the global random state is not touched);
    None draws from the global stream. The same call with the same seed returns the same tokens.
    """
    device = next(_unwrap(model).parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
    min_new_tokens = min(int(min_new_tokens), int(max_new_tokens))
    tokens: list[list[int]] = [[] for _ in prompt_ids]
    logps: list[list[float]] = [[] for _ in prompt_ids]
    for batch in token_budget_batches([len(ids) for ids in prompt_ids], max_new_tokens, batch_tokens):
        done = decode_batch(model, [prompt_ids[i] for i in batch], max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, stop_ids=stop_ids, pad_id=pad_id,
                            min_new_tokens=min_new_tokens, generator=generator, drop_finished=drop_finished)
        for i, new, new_logps in zip(batch, done.tokens, done.logps):
            tokens[i], logps[i] = new, new_logps
    return Decoded(tokens, logps)


class KVGenerator:
    """``generation=kv``: ``decode`` as a generation backend (core/interfaces.py ``Generator``)."""

    name = "kv"

    def __init__(self, batch_tokens: int = DEFAULT_BATCH_TOKENS, drop_finished: bool = True) -> None:
        self.batch_tokens = int(batch_tokens)
        self.drop_finished = bool(drop_finished)

    def generate(self, model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
                 min_new_tokens: int = 0, seed: int | None = None) -> list[list[int]]:
        return decode(model, prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                      stop_ids=stop_ids, pad_id=pad_id, min_new_tokens=min_new_tokens, seed=seed,
                      batch_tokens=self.batch_tokens, drop_finished=self.drop_finished).tokens
