"""Rollouts: sample responses from the policy with the configured generation backend.

A rollout keeps the exact token ids the policy sampled (the response is never re-tokenised
from its text), so the log-probs PPO trains on are those of the sampled tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from alignkit.core.lm import DEFAULT_GENERATOR, Encoded, cut_at_stop, render
from alignkit.core.progress import SamplingProgress

log = logging.getLogger("alignkit")


@dataclass
class PromptPool:
    """Chat prompts with their token ids (rendered once, with the generation prompt)."""

    messages: list[Any]
    token_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.messages)


def encode_prompts(tokenizer: Any, prompts: Sequence[Any], max_prompt_tokens: int) -> tuple[PromptPool, int]:
    """Render and tokenise chat prompts; those longer than ``max_prompt_tokens`` are dropped
    (returned count) rather than cut, since a cut prompt asks a different question."""
    messages, ids, dropped = [], [], 0
    for prompt in prompts:
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        tokens = tokenizer(render(tokenizer, prompt, generation_prompt=True), add_special_tokens=False)["input_ids"]
        if len(tokens) > max_prompt_tokens:
            dropped += 1
            continue
        messages.append(list(prompt))
        ids.append(list(tokens))
    return PromptPool(messages, ids), dropped


@dataclass
class Rollout:
    """One batch of sampled responses."""

    prompts: list[Any]  # chat messages, one per sample
    sequences: list[Encoded]  # prompt + response ids; the response tokens are scored
    responses: list[str]  # decoded response text (special tokens removed)
    response_lengths: torch.Tensor  # [B] long
    truncated: torch.Tensor  # [B] bool: stopped by max_new_tokens, no end-of-sequence token
    seconds: float = 0.0  # how long generating it took

    def __len__(self) -> int:
        return len(self.sequences)


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids: the tokenizer's and the generation config's (chat models often
    end a turn with a token of their own, e.g. ``<|im_end|>``)."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    configured = getattr(gen, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {i for i in ids if i is not None}


@torch.no_grad()
def generate(model: Any, tokenizer: Any, pool: PromptPool, indices: Sequence[int], *, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 0,
             min_new_tokens: int = 0, first_chunk: int = 0, generator: Any = None) -> Rollout:
    """Sample one response per prompt index with ``generator`` (the configured ``generation``
    backend; transformers ``generate`` when None), in chunks of ``batch_size`` (0: all).

    Each chunk is seeded from ``seed`` and its global number (``first_chunk`` + its
    position here; a process's first chunk under data parallelism, plugins/rl/sharding.py)
    and the global RNG is restored afterwards, so a resumed run samples the same responses at
    the same step, and N processes sample the chunks one process would. A response keeps its end-of-sequence token (the
    policy chose to stop, and that choice is trained too); tokens after it are dropped.
    """
    generator = generator or DEFAULT_GENERATOR
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(model, tokenizer)
    chunk = batch_size if batch_size > 0 else max(1, len(indices))
    sequences: list[Encoded] = []
    responses: list[str] = []
    lengths: list[int] = []
    truncated: list[bool] = []
    rng_state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    # no bar of its own (one per PPO step would crowd out the stage's bar, whose postfix shows the
    # rollout tokens/s): each rollout's totals are logged at DEBUG
    try:
        with SamplingProgress("rollout", len(indices), False, level=logging.DEBUG) as progress:
            for number, start in enumerate(range(0, len(indices), chunk), start=first_chunk):
                batch = [pool.token_ids[i] for i in indices[start:start + chunk]]
                generated = generator.generate(model, batch, max_new_tokens=max_new_tokens, temperature=temperature,
                                               top_p=top_p, stop_ids=sorted(stops), pad_id=pad_id,
                                               min_new_tokens=min_new_tokens, seed=seed + 1_000_003 * number)
                for ids, tokens in zip(batch, generated):
                    response, stopped = cut_at_stop(tokens, stops, keep_stop=True)
                    response = response or list(tokens[:1])
                    sequences.append(Encoded(ids + response, [False] * len(ids) + [True] * len(response)))
                    responses.append(tokenizer.decode(response, skip_special_tokens=True))
                    lengths.append(len(response))
                    truncated.append(not stopped)
                progress.update(len(batch), sum(lengths[-len(batch):]))
    finally:
        torch.random.set_rng_state(rng_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        model.train(was_training)
    return Rollout(prompts=[pool.messages[i] for i in indices], sequences=sequences, responses=responses,
                   response_lengths=torch.tensor(lengths, dtype=torch.long),
                   truncated=torch.tensor(truncated, dtype=torch.bool))


def micro_batch(rollout: Rollout, mask: torch.Tensor, part: Sequence[int]) -> tuple[torch.Tensor, int, torch.Tensor, Any]:
    """The rows ``part`` of a rollout for one training forward: their row indices, the widest
    response among them, their response mask cut to that width, and their packed sequences."""
    from alignkit.core.lm import pack

    rows = torch.tensor(part, device=mask.device)
    width = int(rollout.response_lengths[list(part)].max())
    return rows, width, mask[rows, :width], pack([rollout.sequences[i] for i in part]).to(mask.device)


def response_mask(lengths: torch.Tensor) -> torch.Tensor:
    """[B, T] float mask with 1 on the first ``lengths[b]`` positions of row b."""
    width = int(lengths.max()) if lengths.numel() else 0
    return (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).float()


def select(rollout: Rollout, rows: Sequence[int]) -> Rollout:
    """The rollout's rows ``rows``, in that order."""
    rows = list(rows)
    return Rollout(prompts=[rollout.prompts[i] for i in rows], sequences=[rollout.sequences[i] for i in rows],
                   responses=[rollout.responses[i] for i in rows], response_lengths=rollout.response_lengths[rows],
                   truncated=rollout.truncated[rows], seconds=rollout.seconds)


def concat(rollouts: Sequence[Rollout]) -> Rollout:
    """The rollouts one after the other (their generation times added)."""
    return Rollout(prompts=[p for r in rollouts for p in r.prompts],
                   sequences=[s for r in rollouts for s in r.sequences],
                   responses=[t for r in rollouts for t in r.responses],
                   response_lengths=torch.cat([r.response_lengths for r in rollouts]),
                   truncated=torch.cat([r.truncated for r in rollouts]),
                   seconds=sum(r.seconds for r in rollouts))
