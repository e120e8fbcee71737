"""PNG plots of the data report (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from alignkit.core.rundir import pyplot as plt
from alignkit.core.rundir import save_figure as save


def length_histograms(sets: Mapping[str, Mapping[str, Sequence[int]]], path: Path, title: str) -> Path | None:
    """One panel per field (prompt, response): word-count histograms, one series per set
    (``{"before": {"prompt": [...], ...}, "after": {...}}``), on shared bins."""
    import numpy as np

    fields = [f for f in ("prompt", "response") if any(s.get(f) for s in sets.values())]
    if not fields:
        return None
    fig, axes = plt().subplots(1, len(fields), figsize=(5 * len(fields), 3.2), squeeze=False)
    for ax, field in zip(axes[0], fields):
        values = [v for s in sets.values() for v in s.get(field, [])]
        top = max(1, int(np.percentile(values, 99))) if values else 1
        bins = np.linspace(0, top, 31)
        for label, series in sets.items():
            data = np.clip(np.asarray(series.get(field, []), dtype=float), 0, top)
            if len(data):
                ax.hist(data, bins=bins, alpha=0.55, label=f"{label} (n={len(data)})")
        ax.set_xlabel(f"{field} length (words; last bin: >= p99)")
        ax.set_ylabel("records")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def quality_plot(sets: Mapping[str, tuple[Sequence[float], Sequence[int]]], path: Path, title: str) -> Path | None:
    """Quality score histogram per set, and score against response length."""
    if not any(scores for scores, _ in sets.values()):
        return None
    fig, (left, right) = plt().subplots(1, 2, figsize=(10, 3.2))
    for label, (scores, lengths) in sets.items():
        if scores:
            left.hist(scores, bins=30, alpha=0.55, label=f"{label} (n={len(scores)})")
            right.scatter(lengths, scores, s=6, alpha=0.5, label=label)
    left.set_xlabel("quality score")
    left.set_ylabel("records")
    left.legend(fontsize=8)
    right.set_xlabel("response length (words)")
    right.set_ylabel("quality score")
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
