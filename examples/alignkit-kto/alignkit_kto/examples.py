"""KTO's data: unpaired (prompt, completion, desirable) examples.

They come from a JSONL file of unpaired feedback (``optimizer.examples``), or are derived
from preference pairs (the preferred response is desirable, the other undesirable). Which
response of a pair is preferred comes from the configured feedback provider when there is
one (``feedback=<name>``), else from the pair's ``strength`` (chosen unless it is < 0.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from alignkit.core import DataError


@dataclass(frozen=True)
class Example:
    prompt: tuple  # chat messages as ((role, content), ...): hashable, so prompts compare cheaply
    completion: str
    desirable: bool

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.prompt]


def _prompt(value: Any) -> tuple:
    if isinstance(value, str):
        return (("user", value),)
    return tuple((str(m["role"]), str(m["content"])) for m in value)


def read_examples(path: str | Path) -> list[Example]:
    """Rows ``{"prompt": str | messages, "completion": str, "label": bool}`` (TRL's unpaired format)."""
    from alignkit.core.records_io import read_jsonl

    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    examples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        for field, ok, expected in (("prompt", lambda v: isinstance(v, (str, list)) and v, "a string or messages"),
                                    ("completion", lambda v: isinstance(v, str) and v.strip(), "non-empty text"),
                                    ("label", lambda v: isinstance(v, bool), "true or false")):
            if not ok(row.get(field)):
                raise DataError(f"expected {expected}, got {json.dumps(row.get(field))}", path=str(path),
                                line=number, field=field)
        try:
            prompt = _prompt(row["prompt"])
        except (KeyError, TypeError) as exc:
            raise DataError("messages need 'role' and 'content'", path=str(path), line=number,
                            field="prompt") from exc
        examples.append(Example(prompt, row["completion"], row["label"]))
    return examples


@dataclass
class Derived:
    examples: list[Example]
    pairs: int
    dropped: int  # ties and pending verdicts
    agreement: float | None  # share of judged pairs where the provider preferred the dataset's chosen


def examples_from_pairs(rows: Sequence[dict], provider: Any = None, batch_size: int = 64) -> Derived:
    """Two examples per preference pair; ``provider`` (a FeedbackProvider) picks the desirable one."""
    rows = list(rows)
    verdicts: list[str] = []
    if provider is not None:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            judgements = provider.judge([r["prompt"] for r in chunk], [r["chosen"] for r in chunk],
                                        [r["rejected"] for r in chunk])
            if len(judgements) != len(chunk):
                raise ValueError(f"the feedback provider returned {len(judgements)} judgements for "
                                 f"{len(chunk)} pairs")
            verdicts += [j.preferred for j in judgements]
    else:
        for row in rows:
            strength = row.get("strength")
            strength = 1.0 if strength is None else float(strength)
            verdicts.append("a" if strength > 0.5 else "b" if strength < 0.5 else "tie")
    examples: list[Example] = []
    dropped = 0
    for row, verdict in zip(rows, verdicts):
        if verdict not in ("a", "b"):
            dropped += 1
            continue
        prompt = _prompt(row["prompt"])
        good, bad = (row["chosen"], row["rejected"]) if verdict == "a" else (row["rejected"], row["chosen"])
        examples += [Example(prompt, good, True), Example(prompt, bad, False)]
    judged = len(rows) - dropped
    agreement = (sum(v == "a" for v in verdicts) / judged) if provider is not None and judged else None
    return Derived(examples, len(rows), dropped, agreement)
