"""A learnable preference set for tiny models: chosen answers praise, rejected ones complain."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

GOOD = ["good", "great", "correct", "right", "fine", "nice"]
BAD = ["bad", "wrong", "poor", "false", "awful", "broken"]
TOPICS = ["apples", "rivers", "trains", "music", "clouds", "maths", "birds", "stones", "maps", "lamps",
          "boats", "roads", "trees", "coins", "books", "songs"]


def learnable_pairs(n: int, seed: int) -> list[dict]:
    """Pairs whose only signal is one word from GOOD (chosen) or BAD (rejected), at a varying place."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        filler = " ".join(rng.choice(TOPICS) for _ in range(rng.randint(0, 3)))
        template = rng.choice(["The {t} answer is {w}. {f}", "{f} I think it is {w}.", "{w}: {f}"])
        rows.append({
            "prompt": [{"role": "user", "content": f"Tell me about {topic}."}],
            "chosen": template.format(t=topic, w=rng.choice(GOOD), f=filler).strip(),
            "rejected": template.format(t=topic, w=rng.choice(BAD), f=filler).strip(),
        })
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def learnable_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("learnable")
    return write(folder / "train.jsonl", learnable_pairs(160, 0)), write(folder / "eval.jsonl", learnable_pairs(40, 1))
