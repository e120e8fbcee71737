"""Which prompts each RL step samples from, so that a resumed run draws the same ones."""

from __future__ import annotations

import logging
import random
from typing import Any

from alignkit.core.engine import TrainerConfig
from alignkit.core.errors import ConfigError, DataError
from alignkit.core.pipeline import StageContext
from alignkit.plugins.rl.options import RLOptions
from alignkit.plugins.rl.rollout import PromptPool, encode_prompts

log = logging.getLogger("alignkit")


def prompt_indices(count: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The prompts of step ``step`` (0-based): positions ``step*B .. step*B+B-1`` of an endless
    stream of per-epoch shuffles, so a resumed run draws the same prompts at the same step."""
    out: list[int] = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, count)
        order = list(range(count))
        random.Random(seed * 1000 + epoch).shuffle(order)
        take = order[offset:offset + batch_size - len(out)]
        out.extend(take)
        position += len(take)
    return out


def load_prompts(ctx: StageContext, tokenizer: Any, o: RLOptions,
                 settings: TrainerConfig) -> tuple[PromptPool, PromptPool | None]:
    """The stage's training prompts and (``optimizer.eval_prompts``) its held-out ones, rendered
    and tokenised; prompts longer than the room ``max_new_tokens`` leaves are dropped."""
    limit = o.max_prompt_tokens or settings.max_length - o.max_new_tokens
    if limit < 1:
        raise ConfigError(f"trainer.max_length ({settings.max_length}) leaves no room for prompts after "
                          f"optimizer.max_new_tokens ({o.max_new_tokens}); raise it or set optimizer.max_prompt_tokens")
    keep = None
    if o.prompt_filter:
        from alignkit.core.callables import load_callable

        keep = load_callable(o.prompt_filter, what="optimizer.prompt_filter")

    def load(split: str) -> PromptPool | None:
        rows = ctx.dataset("prompts", split)
        if rows is None or len(rows) == 0:
            return None
        prompts = [row["prompt"] for row in rows]
        if keep is not None:
            prompts = [p for p in prompts if keep(p)]
        pool, dropped = encode_prompts(tokenizer, prompts, limit)
        if dropped:
            log.warning("%s: %d %s prompt(s) longer than %d tokens dropped", ctx.name, dropped, split, limit)
        return pool

    pool = load("train")
    if pool is None or len(pool) == 0:
        raise DataError(f"stage '{ctx.name}' has no usable prompts: configure data with prompts (or preference "
                        f"pairs or SFT conversations), check optimizer.prompt_filter and max_prompt_tokens ({limit})")
    eval_pool = load("eval") if o.eval_prompts > 0 else None
    if eval_pool is not None:
        eval_pool = PromptPool(eval_pool.messages[:o.eval_prompts], eval_pool.token_ids[:o.eval_prompts])
        eval_pool = eval_pool if len(eval_pool) else None
    return pool, eval_pool
