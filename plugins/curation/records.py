"""Instruction records and the small helpers every curation data source shares.

An *example* here is one instruction-following record seen as text: the user's prompt and
the assistant's answer. Data sources hand out the normalised SFT shape (``messages``) that
``docs/data.md`` defines; the converters below build it, and read it back for the report.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence


SPLITS = ("train", "eval")
KINDS = ("sft", "preferences", "prompts")


@dataclass(frozen=True)
class Example:
    """One SFT record as text: ``prompt`` (the user turns), ``response`` (the final answer),
    ``instruction`` (the first line of the first user turn: what verb-noun analysis reads)."""

    prompt: str
    response: str
    instruction: str
    messages: tuple[Mapping[str, str], ...]


def sft_messages(instruction: str, input_text: str, output: str) -> list[dict[str, str]]:
    """Alpaca / Self-Instruct fields as a chat: the instruction, then a blank line and the input."""
    user = f"{instruction}\n\n{input_text}" if input_text.strip() else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def example(messages: Sequence[Mapping[str, Any]]) -> Example:
    msgs = tuple({"role": str(m["role"]), "content": str(m["content"])} for m in messages)
    users = [m["content"] for m in msgs if m["role"] == "user"]
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    first = users[0].strip() if users else ""
    return Example(prompt="\n\n".join(users), response=answers[-1] if answers else "",
                   instruction=first.splitlines()[0] if first else "", messages=msgs)


def prompt_of(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The conversation up to its last user turn (what a prompts dataset holds)."""
    msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    while msgs and msgs[-1]["role"] != "user":
        msgs.pop()
    return msgs


def holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a train / eval split: ``round(n * fraction)`` held out (at least 1 when
    n >= 2 and fraction > 0, never all), chosen by ``random.Random(seed)``; both sorted.
    The same rule as ``data=files``."""
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    k = min(n - 1, max(1, round(n * fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[k:]), sorted(order[:k])


def to_dataset(kind: str, rows: list[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of normalised rows, or None when there are none."""
    if not rows:
        return None
    from datasets import Dataset

    return Dataset.from_list(rows)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")


def plain(node: Any) -> Any:
    """A DictConfig / ListConfig / dataclass as plain Python containers."""
    if node is None:
        return None
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, (DictConfig, ListConfig)):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.asdict(node)
    if isinstance(node, Mapping):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def options(schema: type, cfg: Any, what: str) -> Any:
    """``cfg`` (a DictConfig, a mapping or None) checked against the dataclass ``schema`` and
    returned as an instance, by the core's check (unknown keys and wrong types are a ``ConfigError``
    naming the key): for the options nested in a curation source's own (sources, teacher, quality)."""
    from alignkit.core.options import dataclass_options

    return dataclass_options(schema, plain(cfg) or {}, what)


def dedupe_keep_order(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
