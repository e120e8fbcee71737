"""Quality filters of generated instructions and instances (Self-Instruct, section 2.4).

The paper keeps a new instruction only when it is 3 to 150 words long, names nothing a text
model cannot see or make (images, graphs, files, ...), does not start with "Write a program"
or with punctuation or a non-English character, and is not within ROUGE-L 0.7 of any
instruction already in the pool (``rouge.RougeIndex``). An instance is dropped when its output
is empty, equals its input, or, added here from the Alpaca experience, reads like a refusal
or an admission that the task cannot be done ("unanswerable markers").
Each check returns the reason a candidate fails, or None; the generator counts the reasons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional

from alignkit.plugins.curation.lexical import word_count

BANNED_KEYWORDS = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                   "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram"]
"""The Self-Instruct paper's list: tasks a language model cannot do from text alone."""

UNANSWERABLE_MARKERS = ["as an ai", "as a language model", "i'm sorry", "i am sorry", "i cannot", "i can't",
                        "i am unable", "i'm unable", "i do not have access", "i don't have access",
                        "cannot be answered", "not possible to answer", "it is impossible to"]
"""Phrases of an output that refuses or gives up instead of doing the task."""


@dataclass
class FilterConfig:
    """Options of the quality filters (``data.filters.*``)."""

    min_words: int = 3  # an instruction needs more than ... (the paper: more than 3)
    max_words: int = 150  # ... and at most this many words
    banned_keywords: List[str] = field(default_factory=lambda: list(BANNED_KEYWORDS))
    banned_prefixes: List[str] = field(default_factory=lambda: ["write a program"])
    require_ascii_start: bool = True  # drop instructions starting with punctuation or a non-English character
    unanswerable_markers: List[str] = field(default_factory=lambda: list(UNANSWERABLE_MARKERS))
    max_output_words: Optional[int] = 500  # null: no limit
    rouge_threshold: float = 0.7  # drop an instruction with ROUGE-L above this against the pool


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", text) is not None


def instruction_problem(text: str, cfg: FilterConfig) -> str | None:
    """Why a proposed instruction fails the quality filters (a reason key), or None."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    words = word_count(stripped)
    if words <= cfg.min_words:
        return "too_short"
    if words > cfg.max_words:
        return "too_long"
    lower = stripped.lower()
    if any(_contains(lower, k) for k in cfg.banned_keywords):
        return "banned_keyword"
    if any(lower.startswith(p.lower()) for p in cfg.banned_prefixes):
        return "banned_prefix"
    if cfg.require_ascii_start and not (stripped[0].isascii() and stripped[0].isalnum()):
        return "bad_start"
    return None


def instance_problem(input_text: str, output: str, cfg: FilterConfig) -> str | None:
    """Why a generated (input, output) instance fails, or None."""
    if not output.strip():
        return "empty_output"
    if " ".join(output.split()).lower() == " ".join(input_text.split()).lower():
        return "output_equals_input"
    lower = output.lower()
    if any(_contains(lower, m) for m in cfg.unanswerable_markers):
        return "unanswerable"
    if cfg.max_output_words is not None and word_count(output) > cfg.max_output_words:
        return "output_too_long"
    return None
