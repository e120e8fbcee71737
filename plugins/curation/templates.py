"""Prompt templates of a mixture: one record as a zero-shot, few-shot or chain-of-thought prompt.

FLAN found that training on a mix of prompt settings helps every setting at test time. Each
single-turn SFT record of a source is rendered in one style, drawn with the given weights:

* ``zero_shot``: the record as it is;
* ``few_shot``: ``shots`` other records of the same source (its train split) shown first as
  worked examples, then the record's own prompt;
* ``chain_of_thought``: the prompt followed by ``cot_trigger`` ("Let's think step by step.").
  The answer is kept as it is: alignkit has no rationale to add, so use sources whose answers
  reason (GSM8K-style solutions) when the model should learn to reason.

Multi-turn records are left as they are (counted as zero-shot). The draw is a fixed function of
the mixture seed, the source and the record's position.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from alignkit.core.errors import ConfigError

STYLES = ("zero_shot", "few_shot", "chain_of_thought")


@dataclass
class TemplateConfig:
    """Weights of the prompt styles (relative; all zero but zero_shot: templates off)."""

    zero_shot: float = 1.0
    few_shot: float = 0.0
    chain_of_thought: float = 0.0
    shots: int = 2  # worked examples in a few-shot prompt
    cot_trigger: str = "Let's think step by step."

    def weights(self) -> list[float]:
        values = [float(self.zero_shot), float(self.few_shot), float(self.chain_of_thought)]
        if any(v < 0 for v in values) or sum(values) <= 0:
            raise ConfigError(f"templates: the style weights must be >= 0 and not all 0, got "
                              f"zero_shot={self.zero_shot}, few_shot={self.few_shot}, "
                              f"chain_of_thought={self.chain_of_thought}")
        return values

    @property
    def active(self) -> bool:
        return self.few_shot > 0 or self.chain_of_thought > 0


def _single_turn(messages: Sequence[Mapping[str, str]]) -> tuple[list[dict], str, str] | None:
    """(system turns, user text, answer) of a one-question record, else None."""
    msgs = [dict(m) for m in messages]
    system = [m for m in msgs if m["role"] == "system"]
    rest = [m for m in msgs if m["role"] != "system"]
    if len(rest) != 2 or rest[0]["role"] != "user" or rest[1]["role"] != "assistant":
        return None
    return system, rest[0]["content"], rest[1]["content"]


def few_shot_text(examples: Sequence[tuple[str, str]], prompt: str) -> str:
    shown = "".join(f"Example {i}:\n{q}\nAnswer: {a}\n\n" for i, (q, a) in enumerate(examples, start=1))
    return f"{shown}Now answer this one.\n{prompt}"


def render(rows: Sequence[Mapping[str, Any]], pool: Sequence[Mapping[str, Any]], cfg: TemplateConfig,
           rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``rows`` (SFT records) rendered in drawn styles; ``pool``: where few-shot examples come
    from. Returns the rows and how many took each style."""
    weights = cfg.weights()
    counts = {style: 0 for style in STYLES}
    shots = [s for s in (_single_turn(r["messages"]) for r in pool) if s is not None]
    out = []
    for row in rows:
        style = rng.choices(STYLES, weights=weights)[0]
        parts = _single_turn(row["messages"])
        if parts is None or style == "zero_shot":
            counts["zero_shot"] += 1
            out.append({"messages": [dict(m) for m in row["messages"]]})
            continue
        system, prompt, answer = parts
        if style == "few_shot":
            picked = rng.sample(range(len(shots)), min(cfg.shots + 1, len(shots))) if cfg.shots > 0 else []
            others = [shots[i][1:] for i in picked if shots[i][1] != prompt][:cfg.shots]
            if not others:
                counts["zero_shot"] += 1
                out.append({"messages": [dict(m) for m in row["messages"]]})
                continue
            prompt = few_shot_text(others, prompt)
        else:
            prompt = f"{prompt}\n\n{cfg.cot_trigger}"
        counts[style] += 1
        out.append({"messages": [*system, {"role": "user", "content": prompt},
                                 {"role": "assistant", "content": answer}]})
    return out, counts
