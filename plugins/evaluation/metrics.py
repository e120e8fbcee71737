"""Pure metric functions of the evaluate stage: plain Python lists in, numbers out.

Each has a test on constructed inputs with a known answer (tests/plugins/evaluation/test_metrics.py),
so the evaluate stage and the multi-run report only wire them together.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Sequence

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the unit of distinct-n and self-BLEU."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


# -- diversity -----------------------------------------------------------------------------


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all ``texts`` (Li et al. 2016); 0.0 when there are none.

    Pooled over the whole set, so a model that repeats itself across prompts scores low even
    when each single answer is varied.
    """
    pooled = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(pooled)) / len(pooled) if pooled else 0.0


def sentence_bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """BLEU of one tokenised hypothesis against several references.

    Clipped n-gram precisions up to ``max_n`` with add-one smoothing for n > 1 (Lin and Och
    2004, so one missing 4-gram does not zero the score), geometric mean, brevity penalty
    against the reference closest in length.
    """
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(ngrams(hypothesis, n))
        most: Counter = Counter()
        for ref in references:
            for gram, c in Counter(ngrams(ref, n)).items():
                most[gram] = max(most[gram], c)
        matched = sum(min(c, most[g]) for g, c in counts.items())
        total = sum(counts.values())
        if n == 1:
            if matched == 0:
                return 0.0
            log_precision += math.log(matched / total)
        else:
            log_precision += math.log((matched + 1) / (total + 1))
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision / max_n)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU of each text against all the others (Zhu et al. 2018): 1.0 = every answer alike.

    Quadratic in the number of texts; the evaluate stage calls it on a few dozen answers.
    """
    tokenised = [words(t) for t in texts]
    scores = []
    for i, hyp in enumerate(tokenised):
        others = [r for j, r in enumerate(tokenised) if j != i and r]
        if hyp and others:
            scores.append(sentence_bleu(hyp, others, max_n))
    return sum(scores) / len(scores) if scores else 0.0


def mean_pairwise_cosine_distance(vectors: Sequence[Sequence[float]]) -> float:
    """Mean of 1 - cos(u, v) over distinct pairs: embedding diversity (0 = identical meanings)."""
    unit = []
    for v in vectors:
        norm = math.sqrt(sum(x * x for x in v))
        unit.append([x / norm for x in v] if norm > 0 else list(v))
    total, pairs = 0.0, 0
    for i in range(len(unit)):
        for j in range(i + 1, len(unit)):
            total += 1.0 - sum(a * b for a, b in zip(unit[i], unit[j]))
            pairs += 1
    return total / pairs if pairs else 0.0


# -- KL and entropy from log-probs -----------------------------------------------------------


def kl_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Exact KL(p || q) of two discrete distributions (nats); the reference for the estimator."""
    out = 0.0
    for pi, qi in zip(p, q):
        if pi > 0:
            if qi <= 0:
                return math.inf
            out += pi * math.log(pi / qi)
    return out


def kl_estimates(policy_logps: Sequence[float], reference_logps: Sequence[float],
                 lengths: Sequence[int]) -> dict[str, float]:
    """Monte-Carlo KL(policy || reference) from responses *sampled from the policy*.

    Inputs are per-response summed log-probs under each model and the response lengths in
    tokens. log pi(y) - log ref(y) is an unbiased estimate of the sequence-level KL when y is
    drawn from pi at temperature 1 (on few samples it can come out negative); per token
    divides the total by the tokens sampled.
    """
    if not policy_logps:
        return {}
    diffs = [p - r for p, r in zip(policy_logps, reference_logps)]
    tokens = sum(lengths)
    return {
        "per_sequence": sum(diffs) / len(diffs),
        "per_token": sum(diffs) / tokens if tokens else 0.0,
        "per_sequence_std": statistics.pstdev(diffs) if len(diffs) > 1 else 0.0,
    }


def entropy_estimate(logps: Sequence[float], lengths: Sequence[int]) -> float:
    """Per-token entropy of a model estimated on its own samples: -sum log p / tokens (nats)."""
    tokens = sum(lengths)
    return -sum(logps) / tokens if tokens else 0.0


# -- length ------------------------------------------------------------------------------------


def length_stats(lengths: Sequence[float]) -> dict[str, float]:
    """Mean, median, 90th percentile and max of response lengths (tokens)."""
    if not lengths:
        return {}
    ordered = sorted(lengths)
    p90 = ordered[min(len(ordered) - 1, int(math.ceil(0.9 * len(ordered))) - 1)]
    return {"mean": sum(ordered) / len(ordered), "median": float(statistics.median(ordered)),
            "p90": float(p90), "max": float(ordered[-1])}


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant or there are fewer than 3 points."""
    if len(x) != len(y) or len(x) < 3:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def length_explained_gain(policy_rewards: Sequence[float], policy_lengths: Sequence[float],
                          reference_rewards: Sequence[float],
                          reference_lengths: Sequence[float]) -> dict[str, float | None]:
    """How much of the policy's reward gain over the reference length alone explains.

    Fits reward = a + b * length by least squares on the policy's and the reference's samples
    together, then compares the gain the length change predicts, b * (mean policy length -
    mean reference length), with the observed gain. ``share`` is None when there is no gain
    to explain (observed gain <= 0) or lengths do not vary; a share near 1 means the reward
    went up about as much as a pure length reward would have: verbosity hacking.
    """
    rewards = list(policy_rewards) + list(reference_rewards)
    lengths = list(policy_lengths) + list(reference_lengths)
    out: dict[str, float | None] = {"correlation": pearson(lengths, rewards), "slope": None,
                                    "gain": None, "length_gain": None, "share": None}
    if not policy_rewards or not reference_rewards:
        return out
    gain = sum(policy_rewards) / len(policy_rewards) - sum(reference_rewards) / len(reference_rewards)
    out["gain"] = gain
    ml = sum(lengths) / len(lengths)
    sxx = sum((x - ml) ** 2 for x in lengths)
    if sxx <= 0:
        return out
    mr = sum(rewards) / len(rewards)
    slope = sum((x - ml) * (r - mr) for x, r in zip(lengths, rewards)) / sxx
    delta = sum(policy_lengths) / len(policy_lengths) - sum(reference_lengths) / len(reference_lengths)
    out["slope"] = slope
    out["length_gain"] = slope * delta
    if gain > 1e-12:
        out["share"] = slope * delta / gain
    return out


# -- win rate ------------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) with no trials.

    Preferred over the normal approximation because it stays inside [0, 1] and keeps its
    coverage at the small sample sizes an evaluation stage uses.
    """
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rate(wins: int, losses: int, ties: int) -> dict[str, float]:
    """Win, tie and loss rates over all decided comparisons, each with a Wilson 95% interval.

    Ties are their own outcome, not split in halves; ``win_rate_decisive`` is wins / (wins +
    losses) for readers used to that convention.
    """
    n = wins + losses + ties
    out: dict[str, float] = {"n": n, "wins": wins, "losses": losses, "ties": ties}
    for name, k in (("win", wins), ("tie", ties), ("loss", losses)):
        lo, hi = wilson_interval(k, n)
        out[f"{name}_rate"] = k / n if n else 0.0
        out[f"{name}_rate_ci_low"], out[f"{name}_rate_ci_high"] = lo, hi
    decisive = wins + losses
    lo, hi = wilson_interval(wins, decisive)
    out["win_rate_decisive"] = wins / decisive if decisive else 0.0
    out["win_rate_decisive_ci_low"], out["win_rate_decisive_ci_high"] = lo, hi
    return out


def summary_stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and quartiles of a score distribution."""
    if not values:
        return {}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"mean": sum(ordered) / len(ordered), "std": statistics.pstdev(ordered) if len(ordered) > 1 else 0.0,
            "q25": q[0], "median": q[1], "q75": q[2]}


def paired_gain_stderr(policy: Sequence[float], reference: Sequence[float], group: int = 1) -> float:
    """Standard error of the mean reward gain (policy minus reference), pairing the two models'
    scores on the same prompt; the ``group`` responses of one prompt count as one observation,
    so repeated samples of a prompt do not pass for independent prompts. 0.0 for one prompt."""
    diffs = [p - r for p, r in zip(policy, reference)]
    group = max(1, group)
    per_prompt = [sum(diffs[i:i + group]) / len(diffs[i:i + group]) for i in range(0, len(diffs), group)]
    if len(per_prompt) < 2:
        return 0.0
    return statistics.stdev(per_prompt) / math.sqrt(len(per_prompt))


def verbosity_warning(scorer: str, analysis: dict[str, float | None], threshold: float) -> str | None:
    """The warning for a reward gain that length explains (``length_explained_gain``), or None."""
    share = analysis.get("share")
    if share is None or share < threshold:
        return None
    return (f"verbosity: length alone explains {share:.0%} of the gain in '{scorer}' "
            f"(+{analysis['gain']:.3g}; reward-length correlation {analysis['correlation'] or 0:.2f}): "
            f"the policy may be buying reward with longer answers")
