"""The small data every contract suite uses: ``CONTRACT_PAIRS`` and the JSONL files written from them."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


CONTRACT_PAIRS: tuple[tuple[list[dict[str, str]], str, str], ...] = (
    (_user("What is 17 + 25?"), "17 + 25 = 42.", "17 + 25 = 52."),
    (_user("How many minutes are in 3 hours?"), "3 hours is 180 minutes.",
     "Hmm, let me think. That is a tricky one, and it depends on how you look at it."),
    (_user("What is the capital of France?"), "The capital of France is Paris.",
     "I'm sorry, but I can't help with that request."),
    (_user("Reverse the word 'stressed'."), "'stressed' reversed is 'desserts'.", "'stressed' reversed is 'dessert'."),
    (_user("Explain in one sentence what a compiler is."),
     "A compiler translates source code into a program a machine can run.",
     "Great question! Well, before answering, it's always a good idea to think carefully. " * 6),
    ([{"role": "system", "content": "Answer briefly."}, *_user("Say hello in French.")], "Bonjour !", "Hola."),
    (_user("Répète : « déjà vu » 🙂"), "« déjà vu » 🙂", ""),  # non-ASCII, and an empty response
    (_user("What is 2 + 2?"), "4", "4"),  # identical responses
)
"""(prompt messages, a better response, a worse one): realistic pairs plus edge cases (an empty
response, non-ASCII text, a long ramble, a system turn, identical responses)."""


def write_contract_data(folder: Path, kinds: Sequence[str]) -> list[str]:
    """Write ``CONTRACT_PAIRS`` as small JSONL files; returns the ``data=files ...`` overrides."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    good = [(p, a, b) for p, a, b in CONTRACT_PAIRS if a.strip() and b.strip() and a != b]
    rows = {
        "preferences": [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in good] * 2,
        "sft": [{"messages": [*p, {"role": "assistant", "content": a}]} for p, a, _ in good] * 2,
        "prompts": [{"prompt": p} for p, _, _ in good],
    }
    overrides = ["data=files"]
    for kind in kinds:
        path = folder / f"{kind}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[kind]), encoding="utf-8")
        overrides.append(f"data.{kind}={path}")
    return overrides
