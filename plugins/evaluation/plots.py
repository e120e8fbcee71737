"""PNG plots for the run report and the multi-run comparison (matplotlib, no display needed)."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from alignkit.core.rundir import logged_numbers
from alignkit.core.rundir import pyplot as _plt
from alignkit.core.rundir import save_figure as _save

TRAINING_KEYS = ("loss", "eval/loss", "rewards/margin", "rewards/accuracy", "reward*", "*kl*", "*entropy*",
                 "*response_length*", "grad_norm")
"""Which logged series a stage's training-curve panel shows, in order of preference (at most 4)."""


def _series(records: Sequence[Mapping[str, Any]], stage: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for step, key, value in logged_numbers(records, stage):
        if math.isfinite(value):
            out.setdefault(key, []).append((step, float(value)))
    return out


def pick_series(keys: Sequence[str], limit: int = 4) -> list[str]:
    """The most telling logged series of a stage: loss first, then rewards, KL, entropy, length."""
    picked: list[str] = []
    for pattern in TRAINING_KEYS:
        for key in sorted(keys):
            if fnmatch.fnmatch(key, pattern) and key not in picked and not key.endswith(("_seconds", "/std", "_coef")):
                picked.append(key)
                break
        if len(picked) >= limit:
            break
    return picked


def training_curves(records: Sequence[Mapping[str, Any]], stages: Sequence[str], path: Path) -> Path | None:
    """One row per training stage, one panel per picked series against the step."""
    rows = []
    for stage in stages:
        series = _series(records, stage)
        keys = [k for k in pick_series(list(series)) if len(series[k]) >= 2]
        if keys:
            rows.append((stage, keys, series))
    if not rows:
        return None
    plt = _plt()
    cols = max(len(keys) for _, keys, _ in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 2.4 * len(rows)), squeeze=False)
    for r, (stage, keys, series) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(keys):
                ax.axis("off")
                continue
            points = series[keys[c]]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
            ax.set_title(f"{stage}: {keys[c]}", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)


def length_histogram(policy: Sequence[int], reference: Sequence[int], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    top = max([*policy, *reference, 1])
    bins = min(30, max(5, top // 2))
    ax.hist(reference, bins=bins, range=(0, top), alpha=0.55, label=f"reference (mean {_mean(reference):.1f})")
    ax.hist(policy, bins=bins, range=(0, top), alpha=0.55, label=f"policy (mean {_mean(policy):.1f})")
    ax.set_xlabel("response tokens")
    ax.set_ylabel("responses")
    ax.set_title("Response length, policy vs reference", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def reward_vs_kl(kl: Sequence[float], rewards: Sequence[float], reference_rewards: Sequence[float], scorer: str,
                 path: Path, trajectory: Sequence[tuple[float, float]] = (), trajectory_label: str = "") -> Path:
    """Per-response reward against log pi/ref of the policy's samples; the means as big markers;
    the training trajectory (mean KL, mean reward per logged step) where the stage logged both."""
    plt = _plt()
    panels = 2 if trajectory else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.4), squeeze=False)
    ax = axes[0][0]
    ax.scatter(kl, rewards, s=14, alpha=0.6, label="policy responses")
    ax.scatter([0.0], [_mean(reference_rewards)], marker="s", s=60, color="black", label="reference mean")
    ax.scatter([_mean(kl)], [_mean(rewards)], marker="*", s=140, color="red", label="policy mean")
    ax.axvline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("log pi(y) - log ref(y)  (nats per response)")
    ax.set_ylabel(f"reward: {scorer}")
    ax.set_title("Reward vs KL on held-out prompts", fontsize=10)
    ax.legend(fontsize=7)
    if trajectory:
        ax2 = axes[0][1]
        ax2.plot([t[0] for t in trajectory], [t[1] for t in trajectory], marker=".")
        ax2.set_xlabel("KL (logged)")
        ax2.set_ylabel("reward (logged)")
        ax2.set_title(f"Along training: {trajectory_label}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def by_round(rounds: Sequence[int], series: Mapping[str, Sequence[float | None]], path: Path,
             baselines: Mapping[str, float] | None = None) -> Path:
    """One panel per quantity (rewards, KL, win rate) against the round number; a quantity's
    value for the reference (where it has one) as a dashed line."""
    plt = _plt()
    names = list(series)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = [(k, v) for k, v in zip(rounds, series[name]) if v is not None]
        ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label="policy")
        if baselines and baselines.get(name) is not None:
            ax.axhline(baselines[name], color="grey", ls="--", lw=1, label="reference")
            ax.legend(fontsize=7)
        ax.set_xlabel("round")
        ax.set_xticks(list(rounds))
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def frontier(points: Sequence[Mapping[str, Any]], metric: str, path: Path, budget: float | None = None,
             best: str | None = None, higher_is_better: bool = True) -> Path:
    """The ranking metric against KL, one point per run tagged with its run name (runs that land on
    the same spot share one tag), the settings of each run in a key beside the axes; the Pareto
    front joined; the budget dashed."""
    plt = _plt()
    tags = point_tags(points)
    key = [f"{tags[p['run']]}: {p['label']}" if p["label"] != tags[p["run"]] else tags[p["run"]] for p in points]
    fig, ax = plt.subplots(figsize=(10, 4))
    fig.subplots_adjust(left=0.08, right=0.58, bottom=0.13, top=0.9)
    xs = [p["kl"] for p in points]
    ys = [p["reward"] for p in points]
    ax.scatter(xs, ys, s=36, zorder=3)
    ax.margins(x=0.15, y=0.12)  # room for the tags of the outermost points
    for x, y, text in label_groups(points, tags):
        ax.annotate(text, (x, y), fontsize=8, xytext=(5, 4), textcoords="offset points")
    for p in points:
        if best is not None and p["run"] == best:
            ax.scatter([p["kl"]], [p["reward"]], s=160, facecolors="none", edgecolors="red", zorder=4,
                       label="best under budget" if budget is not None else "best")
    front = pareto_front(points, higher_is_better)
    if len(front) > 1:
        ax.plot([p["kl"] for p in front], [p["reward"] for p in front], color="grey", lw=0.8, zorder=2)
    if budget is not None and budget <= 2 * max(xs) + 1e-9:  # a far-away budget would squash the points
        ax.axvline(budget, color="red", ls="--", lw=0.8, label=f"KL budget {budget:g}")
    ax.set_xlabel("KL(policy || reference), nats per response")
    ax.set_ylabel(metric + ("" if higher_is_better else " (lower is better)"), fontsize=8)
    ax.set_title(f"{metric} vs KL, one point per run", fontsize=10)
    if budget is not None or best is not None:
        ax.legend(fontsize=7)
    shown = key[:KEY_LINES] + ([f"... and {len(key) - KEY_LINES} more runs"] if len(key) > KEY_LINES else [])
    fig.text(0.6, 0.9, "\n".join(shown), fontsize=7, va="top", ha="left", family="monospace")
    return _save(fig, path)


KEY_LINES = 30
"""Runs listed in the frontier plot's key (the comparison table lists them all)."""


def point_tags(points: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The tag of each run in the plot: its name when every name is short (``0``, ``1`` of a
    multirun), else its position 1, 2, ... (the key beside the plot says which run it is)."""
    if all(len(p["run"]) <= 8 for p in points):
        return {p["run"]: p["run"] for p in points}
    return {p["run"]: str(n) for n, p in enumerate(points, start=1)}


def label_groups(points: Sequence[Mapping[str, Any]], tags: Mapping[str, str],
                 closeness: float = 0.04) -> list[tuple[float, float, str]]:
    """One label per cluster of points closer than ``closeness`` of the axis spans in both
    directions, at the cluster's first point, naming its runs ('2, 3'): labels of runs that
    land on (almost) the same spot would otherwise print over each other."""
    xs = [p["kl"] for p in points]
    ys = [p["reward"] for p in points]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    clusters: list[list[Mapping[str, Any]]] = []
    for p in points:
        for cluster in clusters:
            q = cluster[0]
            if abs(p["kl"] - q["kl"]) <= closeness * span_x and abs(p["reward"] - q["reward"]) <= closeness * span_y:
                cluster.append(p)
                break
        else:
            clusters.append([p])
    return [(c[0]["kl"], c[0]["reward"], ", ".join(tags[p["run"]] for p in c)) for c in clusters]


def pareto_front(points: Sequence[Mapping[str, Any]], higher_is_better: bool = True) -> list[Mapping[str, Any]]:
    """Runs no other run beats on both lower KL and a better metric, by increasing KL."""
    sign = 1.0 if higher_is_better else -1.0
    front = []
    best = -math.inf
    for p in sorted(points, key=lambda p: (p["kl"], -sign * p["reward"])):
        if sign * p["reward"] > best:
            front.append(p)
            best = sign * p["reward"]
    return front


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
