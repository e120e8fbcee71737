"""Which two of a prompt's k scored samples become its (chosen, rejected) preference pair.

* ``best_worst``: the highest-scored sample against the lowest (online DPO's usual pair).
* ``divpo``: Diverse Preference Optimization (Lanchantin et al. 2025). The samples whose score is
  in the top ``rho`` of the prompt's k form the *chosen pool*, those in the bottom ``rho`` the
  *rejected pool*; the chosen response is the **most** diverse of the chosen pool and the rejected
  one the **least** diverse of the rejected pool, diversity measured against the other samples of
  the same prompt (core/diversity.py). Quality stays above the bar while the model is pushed
  towards its rarer good answers and away from its common bad ones.

Pure functions on plain lists, so the ``label`` stage and the online loop call the same code.
Indices refer to the lists passed in; None means the prompt gives no pair (every sample scored
the same: nothing to prefer).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from alignkit.core.errors import ConfigError

SELECTIONS = ("pairs", "best_worst", "divpo")  # pairs: the label stage's (1st, 2nd), (3rd, 4th), ... judged as sampled
DEFAULT_RHO = 0.5


def check_rho(rho: float, what: str = "divpo_rho") -> float:
    """``rho`` in (0, 0.5]: above one half the top and bottom shares would overlap."""
    if not isinstance(rho, (int, float)) or not 0.0 < float(rho) <= 0.5:
        raise ConfigError(f"{what} must be in (0, 0.5] (the share of samples in each of the chosen and rejected "
                          f"pools), not {rho!r}")
    return float(rho)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation between order statistics (numpy's default):
    position h = (n - 1) q in the sorted values, rounded to 9 decimals so 1 - 0.3 lands on an
    order statistic instead of just past it."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("quantile of no values")
    h = round((len(ordered) - 1) * q, 9)
    low = math.floor(h)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])


def divpo_pools(scores: Sequence[float], rho: float = DEFAULT_RHO) -> tuple[list[int], list[int]]:
    """(chosen pool, rejected pool) as indices.

    Chosen: the scores at or above the (1 - rho) quantile; rejected: the scores at or below the
    rho quantile that score lower than every chosen one. Ties at a threshold all join its pool,
    except that the chosen pool never takes the lowest score: when more than a (1 - rho) share of
    the samples tie at the bottom (a 0/1 rule with one right answer in eight), the chosen pool is
    every sample above the bottom. Both pools are empty when every score is the same.
    """
    check_rho(rho)
    high, low, bottom = quantile(scores, 1.0 - rho), quantile(scores, rho), min(scores)
    chosen = [i for i, s in enumerate(scores) if (s > bottom if high <= bottom else s >= high)]
    if not chosen:
        return [], []
    floor = min(scores[i] for i in chosen)
    rejected = [i for i, s in enumerate(scores) if s <= low and s < floor]
    return chosen, rejected


def divpo_pair(scores: Sequence[float], diversity: Sequence[float],
               rho: float = DEFAULT_RHO) -> Optional[tuple[int, int]]:
    """(chosen, rejected): the most diverse of the chosen pool, the least diverse of the rejected
    pool. Equal diversity goes to the higher score for chosen and the lower for rejected (then the
    first index), so with no diversity signal DivPO is ``best_worst``. None when the rejected pool
    is empty (all scores equal)."""
    if len(scores) != len(diversity):
        raise ValueError(f"{len(scores)} scores but {len(diversity)} diversity values")
    if len(scores) < 2:
        return None
    chosen_pool, rejected_pool = divpo_pools(scores, rho)
    if not chosen_pool or not rejected_pool:
        return None
    chosen = min(chosen_pool, key=lambda i: (-diversity[i], -scores[i], i))
    rejected = min(rejected_pool, key=lambda i: (diversity[i], scores[i], i))
    return chosen, rejected


def best_worst_pair(scores: Sequence[float]) -> Optional[tuple[int, int]]:
    """(first highest, first lowest) score; None when every score is the same."""
    if len(scores) < 2:
        return None
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], i))
    return None if scores[best] == scores[worst] else (best, worst)


def select_pair(scores: Sequence[float], responses: Sequence[str], measure, *, selection: str = "divpo",
                rho: float = DEFAULT_RHO) -> Optional[tuple[int, int]]:
    """One prompt's pair from its k samples: what a loop calls per group.

    ``measure``: ``texts -> [float]`` (core.diversity.diversity_measure); only ``divpo`` calls it.
    """
    if len(scores) != len(responses):
        raise ValueError(f"{len(scores)} scores but {len(responses)} responses")
    if selection == "best_worst":
        return best_worst_pair(scores)
    if selection == "divpo":
        return divpo_pair(scores, measure(list(responses)), rho)
    raise ConfigError(f"pair selection must be best_worst or divpo here, not '{selection}'")


def select_group_pairs(scores: Sequence[float], responses: Sequence[str], group_size: int, measure, *,
                       selection: str = "divpo", rho: float = DEFAULT_RHO) -> list[tuple[int, int]]:
    """(chosen row, rejected row) for each group of ``group_size`` consecutive rows that gives a
    pair (rows ``g*k .. g*k+k-1`` answer one prompt, as an online loop lays its rollouts out)."""
    if len(scores) != len(responses) or group_size < 2 or len(scores) % group_size:
        raise ValueError(f"{len(scores)} scores and {len(responses)} responses do not split into groups of "
                         f"{group_size} (at least 2)")
    pairs = []
    for start in range(0, len(scores), group_size):
        picked = select_pair(list(scores[start:start + group_size]), list(responses[start:start + group_size]),
                             measure, selection=selection, rho=rho)
        if picked is not None:
            pairs.append((start + picked[0], start + picked[1]))
    return pairs
