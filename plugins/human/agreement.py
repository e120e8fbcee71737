"""Agreement between annotators and aggregation of their votes into soft labels.

Pure functions over ``(item, annotator, choice)`` triples so they can be checked by hand:

* ``cohen_kappa``: two annotators, items both labelled.
* ``krippendorff_alpha``: any number of annotators, missing labels allowed (nominal data).
* ``majority`` / ``dawid_skene``: per-item P(A preferred). Dawid–Skene (1979) learns one
  confusion matrix per annotator by EM, so a careless annotator's votes count for less.
* ``flip_rate``: the symmetric label-noise rate implied by how often two annotators disagree
  on the same pair; it is the ``label_smoothing`` of the robust DPO loss.

Skips are never votes: they say "I cannot judge", not "these are equal".
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

VOTES = ("a", "b", "tie")


@dataclass(frozen=True)
class Vote:
    item: Hashable
    annotator: str
    choice: str


@dataclass(frozen=True)
class Aggregate:
    """One item's aggregated verdict: ``probability`` = P(A preferred), ties counting half."""

    preferred: str
    probability: float
    votes: int
    agreement: float


def votes_of(rows: Iterable[object]) -> list[Vote]:
    """Votes from anything with ``item_id``/``item``, ``annotator`` and ``choice``; skips dropped."""
    out = []
    for row in rows:
        choice = getattr(row, "choice")
        if choice not in VOTES:
            continue
        item = getattr(row, "item_id", None)
        out.append(Vote(getattr(row, "item") if item is None else item, str(getattr(row, "annotator")), choice))
    return out


def _by_item(votes: Sequence[Vote]) -> dict[Hashable, dict[str, str]]:
    table: dict[Hashable, dict[str, str]] = defaultdict(dict)
    for vote in votes:
        table[vote.item][vote.annotator] = vote.choice
    return table


def cohen_kappa(first: Mapping[Hashable, str], second: Mapping[Hashable, str]) -> float | None:
    """Cohen's kappa on the items both annotators labelled; None when undefined.

    kappa = (p_o - p_e) / (1 - p_e) with p_e from each annotator's own marginals.
    """
    common = [k for k in first if k in second]
    if not common:
        return None
    n = len(common)
    observed = sum(first[k] == second[k] for k in common) / n
    m1, m2 = Counter(first[k] for k in common), Counter(second[k] for k in common)
    expected = sum(m1[c] * m2[c] for c in set(m1) | set(m2)) / (n * n)
    if expected == 1.0:
        return None  # both gave one and the same answer throughout: chance explains everything
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(units: Mapping[Hashable, Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal values; ``units`` maps an item to its values (any count).

    alpha = 1 - D_o / D_e over the coincidence matrix of pairable values (units with at
    least two values). None when no unit is pairable or only one value ever occurs.
    """
    coincidence: dict[tuple[str, str], float] = defaultdict(float)
    for values in units.values():
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    totals: dict[str, float] = defaultdict(float)
    for (c, _k), value in coincidence.items():
        totals[c] += value
    n = sum(totals.values())
    if n <= 1:
        return None
    observed = sum(v for (c, k), v in coincidence.items() if c != k) / n
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n * (n - 1))
    if expected == 0:
        return None
    return 1.0 - observed / expected


def agreement(rows: Iterable[object]) -> dict[str, object]:
    """Summary for the admin page: alpha over everyone, kappa per pair of annotators."""
    votes = votes_of(rows)
    table = _by_item(votes)
    annotators = sorted({v.annotator for v in votes})
    per_annotator: dict[str, dict[Hashable, str]] = defaultdict(dict)
    for vote in votes:
        per_annotator[vote.annotator][vote.item] = vote.choice
    kappas = {}
    for i, x in enumerate(annotators):
        for y in annotators[i + 1:]:
            value = cohen_kappa(per_annotator[x], per_annotator[y])
            shared = len(set(per_annotator[x]) & set(per_annotator[y]))
            if shared:
                kappas[f"{x} / {y}"] = {"kappa": value, "items": shared}
    overlapping = sum(1 for labels in table.values() if len(labels) >= 2)
    return {
        "annotators": len(annotators),
        "items_with_overlap": overlapping,
        "krippendorff_alpha": krippendorff_alpha({k: list(v.values()) for k, v in table.items()}),
        "cohen_kappa": kappas,
        "flip_rate": flip_rate(votes),
    }


def _probability(counts: Mapping[str, float]) -> float:
    total = counts.get("a", 0) + counts.get("b", 0) + counts.get("tie", 0)
    if total == 0:
        return 0.5
    return (counts.get("a", 0) + 0.5 * counts.get("tie", 0)) / total


def _preferred(probability: float) -> str:
    if abs(probability - 0.5) < 1e-9:
        return "tie"
    return "a" if probability > 0.5 else "b"


def majority(rows: Iterable[object]) -> dict[Hashable, Aggregate]:
    """Vote shares: P(A) = (n_a + n_tie / 2) / n; agreement = share of the most common vote."""
    out = {}
    for item, labels in _by_item(votes_of(rows)).items():
        counts = Counter(labels.values())
        p = _probability(counts)
        out[item] = Aggregate(_preferred(p), p, len(labels), max(counts.values()) / len(labels))
    return out


def dawid_skene(rows: Iterable[object], iterations: int = 50, smoothing: float = 0.5
                ) -> dict[Hashable, Aggregate]:
    """Dawid–Skene EM over classes a/b/tie; P(A) = posterior(a) + posterior(tie) / 2.

    Starts from the vote shares, then alternates: class priors and per-annotator confusion
    matrices (with a Dirichlet ``smoothing`` pseudo-count on each cell, more on the diagonal)
    from the current posteriors, and posteriors from those. Agreement is the posterior mass
    of the chosen class.
    """
    votes = votes_of(rows)
    table = _by_item(votes)
    if not table:
        return {}
    classes = VOTES
    annotators = sorted({v.annotator for v in votes})
    posterior: dict[Hashable, dict[str, float]] = {}
    for item, labels in table.items():
        counts = Counter(labels.values())
        posterior[item] = {c: (counts[c] + 0.01) / (len(labels) + 0.03) for c in classes}
    for _ in range(iterations):
        prior = {c: sum(p[c] for p in posterior.values()) + smoothing for c in classes}
        norm = sum(prior.values())
        prior = {c: v / norm for c, v in prior.items()}
        confusion: dict[str, dict[str, dict[str, float]]] = {}
        for annotator in annotators:
            matrix = {c: {k: smoothing * (2.0 if c == k else 1.0) for k in classes} for c in classes}
            for item, labels in table.items():
                if annotator in labels:
                    for c in classes:
                        matrix[c][labels[annotator]] += posterior[item][c]
            for c in classes:
                row_total = sum(matrix[c].values())
                matrix[c] = {k: v / row_total for k, v in matrix[c].items()}
            confusion[annotator] = matrix
        changed = 0.0
        for item, labels in table.items():
            logs = {c: math.log(prior[c]) + sum(math.log(confusion[a][c][v]) for a, v in labels.items())
                    for c in classes}
            top = max(logs.values())
            weights = {c: math.exp(v - top) for c, v in logs.items()}
            total = sum(weights.values())
            new = {c: w / total for c, w in weights.items()}
            changed = max(changed, max(abs(new[c] - posterior[item][c]) for c in classes))
            posterior[item] = new
        if changed < 1e-6:
            break
    out = {}
    for item, post in posterior.items():
        p = post["a"] + 0.5 * post["tie"]
        best = max(classes, key=lambda c: post[c])
        out[item] = Aggregate(_preferred(p), p, len(table[item]), post[best])
    return out


AGGREGATORS = {"majority": majority, "dawid_skene": dawid_skene}


def aggregate(rows: Iterable[object], method: str = "majority") -> dict[Hashable, Aggregate]:
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {method!r}; use one of: {', '.join(AGGREGATORS)}")
    return AGGREGATORS[method](list(rows))


def flip_rate(rows: Iterable[object]) -> float | None:
    """Symmetric label-noise rate e from pairwise disagreement d on a/b votes: d = 2e(1 - e).

    Every pair of annotators who both voted A or B on an item is one comparison; None
    without any. Solved for e in [0, 0.5].
    """
    agree = disagree = 0
    for labels in _by_item([v for v in votes_of(rows) if v.choice != "tie"]).values():
        counts = Counter(labels.values())
        agree += sum(n * (n - 1) // 2 for n in counts.values())
        disagree += counts["a"] * counts["b"]
    if agree + disagree == 0:
        return None
    d = disagree / (agree + disagree)
    return (1.0 - math.sqrt(max(0.0, 1.0 - 2.0 * d))) / 2.0
