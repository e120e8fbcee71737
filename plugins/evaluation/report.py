"""Reports: ``report.md`` + ``plots/`` for one run, and the comparison of many runs.

The comparison reads only run directories (``summary.json``, ``.hydra/overrides.yaml``,
``.hydra/config.yaml``), so it works on any finished run or Hydra multirun folder.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from alignkit.core.rundir import METRICS, SUMMARY, atomic_write_text, logged_numbers, owner_gone, true_status
from alignkit.plugins.evaluation import plots
from alignkit.plugins.evaluation.diagnostics import DiagnosticsConfig, matching, read_alarms

REPORT = "report.md"
PLOTS = "plots"


# -- helpers -------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def cell(text: str, limit: int = 400) -> str:
    """Text fit for one markdown table cell."""
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or "*(empty)*"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    file = Path(run_dir) / METRICS
    if not file.exists():
        return []
    out = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run
    return out


def pct(value: Any) -> str:
    """A rate in [0, 1] as a percentage: 0.675 -> '67.5%'."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{100 * value:.3g}%"


def win_counts(m: Mapping[str, Any]) -> str:
    """The judged comparisons as counts, each with its rate: 'wins 0 (0%), ties 4 (100%), losses 0 (0%) of 4'."""
    n = int(m["win/n"])
    parts = []
    for name, rate in (("wins", "win_rate"), ("ties", "tie_rate"), ("losses", "loss_rate")):
        count = m.get(f"win/{name}")
        count = int(count) if count is not None else round(m.get(f"win/{rate}", 0.0) * n)
        parts.append(f"{name} {count} ({pct(count / n) if n else '-'})")
    pending = int(m.get("win/pending") or 0)
    return ", ".join(parts) + f" of {n}" + (f"; {pending} awaiting a judgement" if pending else "")


def _pair(m: Mapping[str, float], key: str) -> tuple[Any, Any]:
    return m.get(f"{key}_policy"), m.get(f"{key}_reference")


def _change(p: Any, r: Any) -> str:
    if isinstance(p, (int, float)) and isinstance(r, (int, float)):
        return f"{p - r:+.3g}"
    return "-"


def _samples_phrase(k: int) -> str:
    return "one sample each" if k == 1 else f"{k} samples each"


def evaluation_rows(m: Mapping[str, float], scorers: Sequence[str]) -> list[list[str]]:
    """The report's main table: metric | policy | reference | change."""
    rows: list[list[str]] = []

    def add(label: str, p: Any, r: Any) -> None:
        if p is not None or r is not None:
            rows.append([label, fmt(p), fmt(r), _change(p, r)])

    for name in scorers:
        add(f"reward `{name}` (mean)", m.get(f"reward/{name}/policy_mean"), m.get(f"reward/{name}/reference_mean"))
        add(f"reward `{name}` (std)", m.get(f"reward/{name}/policy_std"), m.get(f"reward/{name}/reference_std"))
        if m.get(f"reward/{name}/gain_stderr") is not None and m.get(f"reward/{name}/gain") is not None:
            rows.append([f"reward `{name}`: gain ± standard error (paired by prompt)",
                         f"{fmt(m[f'reward/{name}/gain'])} ± {fmt(m[f'reward/{name}/gain_stderr'])}", "-", "-"])
    if "win/n" in m:
        rows.append(["win rate over reference (95% CI)",
                     f"{pct(m['win/win_rate'])} [{pct(m['win/win_rate_ci_low'])}, {pct(m['win/win_rate_ci_high'])}]",
                     "-", win_counts(m)])
    if "kl/per_sequence" in m:
        rows.append(["KL(policy ‖ reference) per response (nats)", fmt(m["kl/per_sequence"]), "0", "-"])
        rows.append(["KL per token (nats)", fmt(m.get("kl/per_token")), "0", "-"])
    add("entropy per token (nats, own samples)", m.get("entropy/policy"), m.get("entropy/reference"))
    add("length, mean (tokens)", m.get("length/policy_mean"), m.get("length/reference_mean"))
    add("length, median (tokens)", m.get("length/policy_median"), m.get("length/reference_median"))
    for name in scorers:
        corr, share = m.get(f"reward/{name}/correlation"), m.get(f"reward/{name}/length_share")
        if corr is not None or share is not None:
            flag = " ⚠ verbosity" if m.get(f"reward/{name}/verbosity_warning") else ""
            rows.append([f"`{name}`: reward-length correlation / share of gain from length",
                         f"{fmt(corr)} / {fmt(share)}{flag}", "-", "-"])
    add("distinct-1", *_pair(m, "diversity/distinct_1"))
    add("distinct-2", *_pair(m, "diversity/distinct_2"))
    add("self-BLEU (lower = more diverse)", *_pair(m, "diversity/self_bleu"))
    add("embedding diversity (mean cosine distance)", *_pair(m, "diversity/embedding"))
    add("refusal rate, harmful prompts", *_pair(m, "safety/refusal_harmful"))
    add("over-refusal rate, safe prompts", *_pair(m, "safety/over_refusal"))
    add("sycophancy (goes along with a false premise)", m.get("sycophancy/policy"), m.get("sycophancy/reference"))
    return rows


# -- one run ---------------------------------------------------------------------------------------


def training_trajectory(records: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[float, float]], str]:
    """(KL, reward) per logged step of the first stage that logs both (PPO does)."""
    kl_patterns = DiagnosticsConfig().kl_metrics
    for stage in dict.fromkeys(r.get("stage") for r in records):
        points, label = [], ""
        for r in records:
            if r.get("stage") != stage or stage == "evaluate":
                continue
            kls = matching(r, kl_patterns)
            rewards = matching(r, ["reward", "*/reward", "reward/mean", "reward_mean", "*/reward_mean", "score",
                                   "*/score"])
            if kls and rewards:
                kk, rk = sorted(kls)[0], sorted(rewards)[0]
                points.append((kls[kk], rewards[rk]))
                label = f"{stage}: {rk} vs {kk}"
        if len(points) >= 2:
            return points, label
    return [], ""


def round_table(run_dir: Path, stage: str | None, m: Mapping[str, float],
                scorers: Sequence[str]) -> tuple[list[int], dict[str, list[float | None]], dict[str, float]]:
    """Per-round evaluation figures of a round pipeline: ``rounds.jsonl``'s ``evaluate/*`` metrics
    for earlier rounds and ``m`` (the evaluation being written) for ``stage``'s own round, which
    ``rounds.jsonl`` holds only once the stage has finished. Empty for a pipeline without rounds."""
    import re

    from alignkit.core.pipeline import ROUNDS

    by_round: dict[int, dict[str, Any]] = {}
    file = Path(run_dir) / ROUNDS
    if file.exists():
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            by_round[int(row["round"])] = {k[len("evaluate/"):]: v for k, v in row.get("metrics", {}).items()
                                           if k.startswith("evaluate/")}
    match = re.fullmatch(r".+_(\d+)", stage or "")
    if match and (by_round or int(match.group(1)) > 1):
        by_round[int(match.group(1))] = dict(m)
    by_round = {k: v for k, v in by_round.items() if v}
    if not by_round:
        return [], {}, {}
    rounds = sorted(by_round)
    keys = {f"reward {name.rsplit(':', 1)[-1]}": f"reward/{name}/policy_mean" for name in scorers}
    keys.update({"KL per response (nats)": "kl/per_sequence", "win rate vs reference": "win/win_rate"})
    series = {label: [by_round[k].get(key) for k in rounds] for label, key in keys.items()}
    # every round is measured against the same reference: its rewards are the baseline
    baselines = {f"reward {name.rsplit(':', 1)[-1]}": by_round[rounds[0]].get(f"reward/{name}/reference_mean")
                 for name in scorers}
    return (rounds, {label: values for label, values in series.items() if any(v is not None for v in values)},
            {label: value for label, value in baselines.items() if value is not None})


def write_run_report(run_dir: Path, results: Mapping[str, Any], samples: Sequence[Mapping[str, Any]],
                     n_samples: int = 4, stage: str | None = None) -> Path:
    """``report.md`` and ``plots/*.png`` in the run directory, from the evaluate stage's results
    (``stage``: that stage's name, which places it among the rounds of a round pipeline)."""
    run_dir = Path(run_dir)
    m = results["metrics"]
    scorers = list(results.get("scorers", []))
    summary = json.loads((run_dir / SUMMARY).read_text()) if (run_dir / SUMMARY).exists() else {}
    records = read_metrics(run_dir)
    stages = [s for s, rec in summary.get("stages", {}).items() if s != "evaluate" and rec.get("status") == "completed"]
    plot_dir = run_dir / PLOTS
    images: list[tuple[str, Path]] = []
    curves = plots.training_curves(records, stages, plot_dir / "training.png")
    if curves:
        images.append(("Training curves per stage", curves))
    dist = results.get("distributions", {})
    images.append(("Response length, policy vs reference",
                   plots.length_histogram(dist.get("policy_lengths", []), dist.get("reference_lengths", []),
                                          plot_dir / "length_hist.png")))
    if scorers:
        main = scorers[0]
        traj, label = training_trajectory(records)
        rewards = dist["rewards"][main]
        images.append(("Reward vs KL", plots.reward_vs_kl(dist.get("kl_per_sample", []), rewards["policy"],
                                                          rewards["reference"], main, plot_dir / "reward_vs_kl.png",
                                                          traj, label)))

    out = [f"# Run report: `{run_dir.name}`", ""]
    out.append(f"Pipeline `{summary.get('pipeline', '?')}`: stages "
               + ", ".join(f"{s} ({rec.get('status')})" for s, rec in summary.get("stages", {}).items()
                           if s != "evaluate") + ", evaluate (this report).")
    out.append("")
    out.append(f"Policy `{results['policy']}` against reference `{results['reference']}` on {results['prompts']} "
               f"held-out prompts, "
               f"{_samples_phrase(results.get('samples_per_prompt', 1))} (seed {results['seed']}, temperature {results['temperature']}, "
               f"up to {results['max_new_tokens']} new tokens).")
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        import yaml

        args = yaml.safe_load(overrides.read_text()) or []
        out.append(f"Command: `alignkit {' '.join(args)}`")
    out.append("")
    warnings = list(results.get("warnings", []))
    alarms = read_alarms(run_dir)
    if warnings or alarms:
        out += ["## Warnings", ""]
        out += [f"- {w}" for w in warnings]
        out += [f"- alarm ({a['kind']}): {a['message']}" for a in alarms]
        out.append("")
    out += ["## Policy vs reference", "", table(["metric", "policy", "reference", "change"],
                                                evaluation_rows(m, scorers)), ""]
    if not scorers:
        out += ["No reward was measured: configure `preference_model=...` or `evaluate.scorers=[pkg.mod:fn]`.", ""]
    rounds, series, baselines = round_table(run_dir, stage, m, scorers)
    if rounds and series:
        reference_row = [["reference", *(fmt(baselines.get(s)) if s in baselines else "-" for s in series)]]
        out += ["## By round", "", "Each round's evaluation against the same reference, prompts and seed.", "",
                table(["round", *series], reference_row + [[k, *(fmt(series[s][i]) for s in series)]
                                                           for i, k in enumerate(rounds)]), ""]
        images.insert(0, ("By round", plots.by_round(rounds, series, plot_dir / "rounds.png", baselines)))
    out += ["## Plots", ""]
    for title, path in images:
        out += [f"### {title}", "", f"![{title}]({path.relative_to(run_dir)})", ""]
    out += ["## Sample completions", ""]
    shown = [s for s in samples[:n_samples]]
    rows = []
    for s in shown:
        prompt = s["prompt"][-1]["content"] if s["prompt"] else ""
        extra = ""
        if scorers:
            r = s.get(f"reward/{scorers[0]}", {})
            extra = f" (`{scorers[0]}` {fmt(r.get('reference'))} → {fmt(r.get('policy'))})"
        rows.append([cell(prompt, 200) + extra, cell(s["reference"]), cell(s["policy"])])
    out += [table(["prompt", "reference", "policy"], rows), ""]
    safety = results.get("safety_examples", [])
    if safety:
        out += ["### Safety prompts (first two of each kind)", ""]
        picked = [e for e in safety if e["label"] == "harmful"][:2] + [e for e in safety if e["label"] == "safe"][:2]
        out += [table(["prompt", "kind", "reference", "policy"],
                      [[cell(e["prompt"], 160), e["label"], cell(e["reference"], 240), cell(e["policy"], 240)]
                       for e in picked]), ""]
    path = run_dir / REPORT
    atomic_write_text(path, "\n".join(out))
    return path


# -- many runs -----------------------------------------------------------------------------------------

TIMING = "*seconds*"
"""Timing keys differ in every run and say nothing about the result: left out of the comparison."""

LOWER_IS_BETTER = ("*loss*", "*perplexity*", "kl/*", "*/kl*", "*kl_per_*", "*over_refusal*", "sycophancy/*",
                   "*self_bleu*")
"""Metric names (glob patterns) whose smaller values are better; every other metric ranks high first."""

STAGE_RANKING = (("eval/rewards/accuracy", "held-out preference accuracy"),
                 ("eval/accuracy", "held-out preference accuracy"), ("eval/loss", "held-out loss"))
"""Without a reward or win rate, runs rank by the last training stage's first held-out metric of these."""

KEY_ORDER = ("*accuracy*", "*loss*", "*margin*", "*kl*", "*reward*", "*entropy*", "*length*")
"""Order of the rows of a stage's table: held-out (``eval/``) first, then training, each in this order."""

NOT_JUDGE = frozenset({"cache", "cache_dir", "batch_size", "concurrency", "timeout", "retries", "backoff",
                       "api_key_env", "url", "wait"})
"""Feedback settings that change how a judge runs, not what it prefers: not part of its identity."""

JUDGE_NAMED_BY = ("fn", "model", "backend", "constitution", "preference_model")
"""The settings that name a judge in the report's legend when no other judge of the sweep has its provider
(its rule, its model, its constitution, its reward model), rather than every setting it has."""

EVALUATE_STAGE = re.compile(r"evaluate(_\d+)?")


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` (an evaluate metric, or ``<stage>/<key>``) ranks lowest first."""
    if metric.startswith(("reward/", "win/win_rate")):  # a scorer named "gloss" is still a reward
        return False
    return any(fnmatch.fnmatch(metric, p) or fnmatch.fnmatch(metric.split("/", 1)[-1], p) for p in LOWER_IS_BETTER)


def find_runs(dirs: Sequence[Path]) -> list[Path]:
    """Run directories among ``dirs``: each one that holds ``summary.json`` or ``.hydra/`` (a job
    that failed before writing its summary), else its sub-folders that do (a Hydra multirun
    folder: ``0/``, ``1/``, ...), in numeric order."""
    def is_run(p: Path) -> bool:
        return (p / SUMMARY).is_file() or (p / ".hydra" / "overrides.yaml").is_file()

    runs: list[Path] = []
    for d in map(Path, dirs):
        if is_run(d):
            runs.append(d)
            continue
        found = {p.parent for p in d.rglob(SUMMARY) if ".hydra" not in p.parts}
        found |= {p.parent.parent for p in d.rglob("overrides.yaml") if p.parent.name == ".hydra"}
        found = {p for p in found if p != d and not any(q != p and q in p.parents for q in found)}
        runs.extend(sorted(found, key=lambda p: [(0, int(x), "") if x.isdigit() else (1, 0, x)
                                                 for x in p.relative_to(d).parts]))
    return list(dict.fromkeys(r.resolve() for r in runs))


def run_overrides(run: Path) -> dict[str, str]:
    file = run / ".hydra" / "overrides.yaml"
    if not file.exists():
        return {}
    import yaml

    out = {}
    for arg in yaml.safe_load(file.read_text()) or []:
        key, _, value = str(arg).partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra."):
            out[key] = value
    return out


def _flat(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(node) if isinstance(node, (list, dict)) else str(node)}


def _config(run: Path) -> dict[str, Any]:
    import yaml

    file = run / ".hydra" / "config.yaml"
    try:
        return (yaml.safe_load(file.read_text()) or {}) if file.exists() else {}
    except yaml.YAMLError:
        return {}


def swept_parameters(runs: Sequence[Path]) -> tuple[list[str], list[dict[str, str]]]:
    """Parameters that differ between runs: from their command-line overrides, or (runs started
    separately with the same overrides) from their composed configs."""
    values = [run_overrides(r) for r in runs]
    keys = sorted({k for v in values for k in v})
    swept = [k for k in keys if len({v.get(k, "") for v in values}) > 1]
    if swept or len(runs) < 2:
        return swept, values
    configs = [_flat(_config(r)) for r in runs]
    keys = sorted({k for c in configs for k in c if not k.startswith("hydra.")})
    swept = [k for k in keys if len({c.get(k, "") for c in configs}) > 1][:8]
    return swept, configs


def last_logged(records: Sequence[Mapping[str, Any]], stage: str) -> dict[str, float]:
    """The last value of each key ``stage`` logged to metrics.jsonl, named as summary.json names a
    finished stage's metrics (``train/<key>``, held-out ones ``eval/<key>``)."""
    return {key if key.startswith("eval/") else f"train/{key}": value
            for _, key, value in logged_numbers(records, stage)}


def judge_identity(feedback: Any, preference_model: Any, run_label: str) -> dict[str, Any] | None:
    """What decides a run's win rate: the feedback provider's name and the settings that change
    its verdicts (a local judge without ``model`` is the run's own policy: a judge of its own)."""
    if not isinstance(feedback, Mapping) or not feedback.get("name"):
        return None
    identity = {k: v for k, v in feedback.items() if k not in NOT_JUDGE}
    if feedback["name"] == "reward_model" and isinstance(preference_model, Mapping):
        identity["preference_model"] = {k: v for k, v in preference_model.items() if k not in NOT_JUDGE}
    if "model" in feedback and feedback.get("model") is None and feedback.get("backend", "local") == "local":
        identity["model"] = f"the policy of run {run_label}"
    return identity


def _first_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def run_record(run: Path, label: str | None = None) -> dict[str, Any]:
    """One run for the comparison: status (``failed`` with its error's first line; ``no summary``;
    ``unreadable``), the last evaluate stage's metrics, each training stage's final metrics
    (summary.json, else the last logged values in metrics.jsonl) and the judge of its win rate."""
    label = label or run.name
    summary: dict[str, Any] = {}
    status, error = "?", ""
    file = run / SUMMARY
    if not file.exists():
        status, error = "no summary", f"no {SUMMARY}: the job stopped before its first stage, or is still running"
    else:
        try:
            summary = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(summary, dict):
                raise ValueError("not a JSON object")
            status = true_status(summary)
            error = _first_line(summary.get("error"))
            if status == "interrupted":
                error = error or owner_gone(summary) or ""
        except (ValueError, UnicodeDecodeError) as exc:
            summary, status, error = {}, "unreadable", f"{file}: {exc}"
    stage_records = summary.get("stages", {}) if isinstance(summary.get("stages"), dict) else {}
    logged = read_metrics(run)
    names = list(dict.fromkeys([*stage_records, *(r.get("stage") for r in logged if r.get("stage"))]))
    evaluation: dict[str, Any] = {}
    evaluation_stage = None
    stages: dict[str, dict[str, Any]] = {}
    for name in names:
        rec = stage_records.get(name) or {}
        metrics = rec.get("metrics") or {}
        if EVALUATE_STAGE.fullmatch(name):
            if metrics:
                evaluation, evaluation_stage = dict(metrics), rec
            continue
        metrics = dict(metrics) or last_logged(logged, name)
        stages[name] = {k: v for k, v in metrics.items() if not fnmatch.fnmatch(k, TIMING)}
    judge = None
    if any(k.startswith("win/") for k in evaluation):
        results_path = (evaluation_stage or {}).get("artifacts", {}).get("evaluation")
        results = {}
        if results_path and (run / results_path).is_file():
            try:
                results = json.loads((run / results_path).read_text(encoding="utf-8"))
            except ValueError:
                results = {}
        cfg = _config(run)
        judge = judge_identity(results.get("judge", cfg.get("feedback")), cfg.get("preference_model"), label)
    return {"run": str(run), "label": label, "status": status, "error": error,
            "metrics": {k: v for k, v in evaluation.items() if not fnmatch.fnmatch(k, TIMING)},
            "stages": stages, "judge": judge}


def metric_value(rec: Mapping[str, Any], name: str) -> float | None:
    """``name``'s value in a run: an evaluate metric (``reward/x/policy_mean``) or a training
    stage's (``dpo/eval/loss``)."""
    value = rec["metrics"].get(name)
    if value is None:
        stage, _, key = name.partition("/")
        value = rec["stages"].get(stage, {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def available_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Every metric name ``--metric`` accepts, by stage (``evaluate``: the evaluation's)."""
    out: dict[str, list[str]] = {}
    evaluated = sorted({k for r in records for k in r["metrics"]})
    if evaluated:
        out["evaluate"] = evaluated
    for stage in dict.fromkeys(s for r in records for s in r["stages"]):
        keys = sorted({k for r in records for k in r["stages"].get(stage, {})})
        if keys:
            out[stage] = [f"{stage}/{k}" for k in keys]
    return out


def resolve_metric(records: Sequence[Mapping[str, Any]], metric: str) -> str:
    """``--metric``: a metric name, a scorer name (its mean reward), ``evaluate/<key>``, or a
    training key (``eval/loss``: the last stage that has it). Anything else is refused with the choices."""
    names = available_metrics(records)
    everything = [n for group in names.values() for n in group]
    candidates = [metric, f"reward/{metric}/policy_mean", metric.removeprefix("evaluate/")]
    for stage in reversed([s for s in names if s != "evaluate"]):
        candidates.append(f"{stage}/{metric}")
    for name in candidates:
        if name in everything:
            return name
    scorers = sorted({k.split("/")[1] for k in names.get("evaluate", []) if k.endswith("/policy_mean")})
    lines = [f"--metric {metric!r} is not a metric of these runs. Choose one of:"]
    if scorers:
        lines.append("  scorers (their mean reward): " + ", ".join(scorers))
    lines += [f"  {group}: " + ", ".join(keys) for group, keys in names.items()]
    if not everything:
        lines.append("  (none: no run has finished a stage)")
    from alignkit.core.errors import ConfigError

    raise ConfigError("\n".join(lines))


def default_metric(records: Sequence[Mapping[str, Any]]) -> tuple[str | None, str]:
    """The metric that ranks runs when ``--metric`` is not given, and why: the first reward every
    evaluated run has, else the win rate, else the last training stage's held-out preference
    accuracy (DPO, reward models), else its held-out loss (SFT)."""
    evaluated = [r["metrics"] for r in records if r["metrics"]]
    if evaluated:
        common = set.intersection(*(set(m) for m in evaluated))
        for key in sorted(k for k in evaluated[0] if k.startswith("reward/") and k.endswith("/policy_mean")):
            if key in common:
                return key, "the mean reward of the evaluate stage's scorer"
        if "win/win_rate" in common:
            return "win/win_rate", "the evaluate stage's win rate over the reference, as no run has a reward"
    stages = list(dict.fromkeys(s for r in records for s in r["stages"]))
    for stage in reversed(stages):
        for key, what in STAGE_RANKING:
            if any(key in r["stages"].get(stage, {}) for r in records):
                return f"{stage}/{key}", f"the last training stage's {what}, as no run has a reward or a win rate"
    return None, ""


def _ranks(values: Sequence[tuple[int, float]], higher: bool) -> dict[int, int]:
    """Competition ranks (1, 1, 3) of (index, value) pairs, best first."""
    ordered = sorted(values, key=lambda iv: -iv[1] if higher else iv[1])
    ranks: dict[int, int] = {}
    for position, (i, v) in enumerate(ordered):
        earlier = ordered[position - 1] if position else None
        ranks[i] = ranks[earlier[0]] if earlier is not None and earlier[1] == v else position + 1
    return ranks


def _judge_tags(records: Sequence[Mapping[str, Any]]) -> tuple[list[str | None], list[str]]:
    """A tag per run (J1, J2, ...: who judged its win rate) when the runs had more than one judge,
    and one legend line per tag naming the judge by the settings in which the judges differ."""
    identities = [json.dumps(r["judge"], sort_keys=True, default=str) if r["judge"] else None for r in records]
    distinct = list(dict.fromkeys(i for i in identities if i))
    if len(distinct) < 2:
        return [None] * len(records), []
    judges = [json.loads(i) for i in distinct]
    legend = []
    for n, j in enumerate(judges, start=1):
        peers = [x for x in judges if x.get("name") == j.get("name")]
        if len(peers) > 1:  # the same provider with other settings: the settings in which they differ
            keys = sorted(k for k in {k for x in peers for k in x} - {"name"}
                          if len({json.dumps(x.get(k), sort_keys=True) for x in peers}) > 1)
        else:  # a provider of its own (a sweep over feedback=rule,constitution): what names the judge
            keys = [k for k in JUDGE_NAMED_BY if k in j and j[k] not in (None, "")]
        settings = ", ".join(f"{k}={json.dumps(j.get(k)) if isinstance(j.get(k), (dict, list)) else j.get(k)}"
                             for k in keys)
        runs = ", ".join(f"`{r['label']}`" for r, i in zip(records, identities) if i == distinct[n - 1])
        legend.append(f"J{n} = feedback `{j['name']}`" + (f" ({settings})" if settings else "") + f": runs {runs}")
    return [f"J{distinct.index(i) + 1}" if i else None for i in identities], legend


def composite_columns(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(column, metric) for a composite preference model's combined score and each of its members'
    (``reward/composite/helpful/policy_mean``), the policy's mean: a sweep over the combiner compares
    the members, as the combined scores of different combiners are on different scales."""
    keys = {k for r in records for k in r["metrics"] if k.startswith("reward/") and k.endswith("/policy_mean")}
    scorers = {k[len("reward/"):-len("/policy_mean")] for k in keys}
    parents = sorted({s.split("/")[0] for s in scorers if s.count("/") == 1} & scorers)
    return [(scorer, f"reward/{scorer}/policy_mean") for parent in parents
            for scorer in [parent, *sorted(s for s in scorers if s.startswith(parent + "/"))]]


def _win_cell(m: Mapping[str, Any]) -> str:
    if m.get("win/win_rate") is None:
        return "-"
    n = m.get("win/n")
    wins = m.get("win/wins", round(m["win/win_rate"] * n) if n is not None else None)
    return pct(m["win/win_rate"]) + (f" ({int(wins)} of {int(n)})" if n is not None and wins is not None else "")


def _key_order(key: str) -> tuple[int, int, str]:
    group = 0 if key.startswith("eval/") else 1 if key.startswith("train/") else 2
    short = key.split("/", 1)[1] if group < 2 else key
    prio = next((i for i, p in enumerate(KEY_ORDER) if fnmatch.fnmatch(short, p)), len(KEY_ORDER))
    return group, prio, key


def stage_tables(records: Sequence[Mapping[str, Any]], same_limit: int = 10) -> list[str]:
    """Markdown, one section per training stage: its final training and held-out metrics, one
    column per run; the keys whose (printed) values differ between runs, then the others in one line."""
    out: list[str] = []
    stages = list(dict.fromkeys(s for r in records for s in r["stages"]))
    for stage in stages:
        having = [r for r in records if stage in r["stages"]]
        keys = sorted({k for r in having for k in r["stages"][stage]}, key=_key_order)
        if not keys:
            continue
        printed = {k: [fmt(r["stages"].get(stage, {}).get(k)) for r in records] for k in keys}
        differ = [k for k in keys if len(records) < 2 or len(set(printed[k])) > 1]
        same = [k for k in keys if k not in differ]
        out += [f"### Stage `{stage}`: final training and held-out metrics", ""]
        if differ:
            out += [table(["metric", *(f"`{r['label']}`" for r in records)],
                          [[f"`{k}`", *printed[k]] for k in differ]), ""]
        if same:
            shown = ", ".join(f"`{k}` {printed[k][0]}" for k in same[:same_limit])
            more = f" and {len(same) - same_limit} more" if len(same) > same_limit else ""
            out += [f"The same in every run: {shown}{more}.", ""]
    return out


def comparison(dirs: Sequence[Path], kl_budget: float | None = None, metric: str | None = None) -> dict[str, Any]:
    """The runs under ``dirs``, their swept parameters, table rows, frontier points and the best run."""
    runs = find_runs(dirs)
    if not runs:
        from alignkit.core.errors import ConfigError

        raise ConfigError(f"no run directory (a folder with {SUMMARY}) under: {', '.join(map(str, dirs))}")
    base = Path(dirs[0]).resolve()
    labels = [str(r.relative_to(base)) if r.is_relative_to(base) and r != base else r.name for r in runs]
    swept, values = swept_parameters(runs)
    records = [run_record(r, label) for r, label in zip(runs, labels)]
    if metric:
        key, why = resolve_metric(records, metric), "chosen with --metric"
    else:
        key, why = default_metric(records)
    higher = not lower_is_better(key) if key else True
    tags, judge_legend = _judge_tags(records)
    # a win rate is only comparable among runs with the same judge: rank within each judge's runs
    groups = tags if key and key.startswith("win/") and judge_legend else [None] * len(records)
    ranks: dict[int, int] = {}
    for group in dict.fromkeys(groups) if key else ():
        ranked = [(i, metric_value(r, key)) for i, (r, g) in enumerate(zip(records, groups))
                  if g == group and r["status"] == "completed"]
        ranks.update(_ranks([(i, v) for i, v in ranked if v is not None], higher))
    gain_key = key.replace("/policy_mean", "/gain") if key and key.endswith("/policy_mean") else None
    columns: list[tuple[str, Any]] = [
        *((name, lambda m, k=k: fmt(m.get(k))) for name, k in composite_columns(records) if k != key),
        ("gain", lambda m: fmt(m.get(gain_key)) if gain_key else "-"),
        ("win rate", _win_cell),
        ("judge", None),
        ("KL/resp", lambda m: fmt(m.get("kl/per_sequence"))), ("KL/token", lambda m: fmt(m.get("kl/per_token"))),
        ("length", lambda m: fmt(m.get("length/policy_mean"))),
        ("distinct-2", lambda m: fmt(m.get("diversity/distinct_2_policy"))),
        ("refusal (harmful)", lambda m: fmt(m.get("safety/refusal_harmful_policy"))),
        ("over-refusal", lambda m: fmt(m.get("safety/over_refusal_policy"))),
        ("sycophancy", lambda m: fmt(m.get("sycophancy/policy")))]
    cells = {name: [(tags[i] or "-") if fn is None else fn(r["metrics"]) for i, r in enumerate(records)]
             for name, fn in columns}
    shown = [name for name, _ in columns if any(c != "-" for c in cells[name])]  # no empty columns
    header = ["run", "status", *swept, *(["rank", key] if key else []), *shown]
    rows, points = [], []
    for i, (rec, vals) in enumerate(zip(records, values)):
        value = metric_value(rec, key) if key else None
        rank = str(ranks[i]) + (f" ({groups[i]})" if groups[i] else "") if i in ranks else "-"
        rows.append([rec["label"], rec["status"], *[vals.get(k, "default") for k in swept],
                     *([rank, fmt(value)] if key else []), *(cells[name][i] for name in shown)])
        kl = rec["metrics"].get("kl/per_sequence")
        if value is not None and isinstance(kl, (int, float)) and rec["status"] == "completed":
            short = ", ".join(f"{k.rpartition('.')[2]}={vals.get(k, 'default')}" for k in swept) or rec["label"]
            points.append({"run": rec["label"], "label": short, "kl": float(kl), "reward": value,
                           "group": groups[i]})
    # the budget is about KL alone: a run with a KL measurement is within it or not, ranked or not
    measured = [(r, float(r["metrics"]["kl/per_sequence"])) for r in records
                if r["status"] == "completed" and isinstance(r["metrics"].get("kl/per_sequence"), (int, float))]
    within = [r["label"] for r, kl in measured if kl_budget is None or kl <= kl_budget]
    eligible = [p for p in points if p["run"] in within]
    best = None
    if eligible and not (key and key.startswith("win/") and judge_legend):
        best = (max if higher else min)(eligible, key=lambda p: p["reward"])
    best_by_judge = {}
    if key and key.startswith("win/") and judge_legend:
        for group in dict.fromkeys(p["group"] for p in eligible):
            best_by_judge[group] = (max if higher else min)((p for p in eligible if p["group"] == group),
                                                            key=lambda p: p["reward"])
    failed = [(r["label"], r["status"], r["error"]) for r in records if r["status"] not in ("completed",)]
    return {"runs": runs, "records": records, "swept": swept, "key": key, "why": why, "higher_is_better": higher,
            "header": header, "rows": rows, "points": points, "best": best, "best_by_judge": best_by_judge,
            "kl_budget": kl_budget, "within_budget": within, "kl_measured": [r["label"] for r, _ in measured],
            "smallest_kl": min(measured, key=lambda rk: rk[1]) if measured else None,
            "judge_legend": judge_legend, "failed": failed, "values": values}


def _budget_lines(c: Mapping[str, Any]) -> list[str]:
    key, budget, best = c["key"], c["kl_budget"], c["best"]
    where = f"with KL ≤ {budget:g} nats per response" if budget is not None else "(no KL budget given)"
    if c["best_by_judge"]:
        return [f"**Best run {where}, per judge** (win rates of different judges are not comparable): "
                + "; ".join(f"{g or 'judge unknown'}: `{p['run']}` ({p['label']}), {key} = {fmt(p['reward'])}, KL = {fmt(p['kl'])}"
                            for g, p in c["best_by_judge"].items()) + "."]
    if best is not None:
        return [f"**Best run {where}: `{best['run']}`** ({best['label']}): {key} = {fmt(best['reward'])}, "
                f"KL = {fmt(best['kl'])}."]
    if budget is None:
        return []
    measured, within = c["kl_measured"], c["within_budget"]
    if not measured:
        return [f"No run has a KL measurement (the evaluate stage's `kl/per_sequence`) to hold to the budget "
                f"of {budget:g} nats per response."]
    if not within:
        run, kl = c["smallest_kl"]
        return [f"No run stays within the KL budget of {budget:g} nats per response: the smallest KL is "
                f"{fmt(kl)} (`{run['label']}`)."]
    reason = "nothing ranks them" if key is None else f"none of them has `{key}`"
    return [f"{len(within)} of {len(measured)} runs with a KL measurement stay within the KL budget of "
            f"{budget:g} nats per response ({', '.join(f'`{r}`' for r in within)}); {reason}."]


def compare_runs(dirs: Sequence[Path], out_dir: Path | None = None, kl_budget: float | None = None,
                 metric: str | None = None) -> tuple[Path, str]:
    """Write ``comparison.md`` and ``frontier.png`` for the runs under ``dirs``; returns the
    markdown path and text (``alignkit report`` prints it)."""
    c = comparison(dirs, kl_budget, metric)
    out_dir = Path(out_dir) if out_dir else Path(dirs[0])
    key, points = c["key"], c["points"]
    n_failed = len(c["failed"])
    count = f"{len(c['runs'])} runs" + (f" ({n_failed} not completed)" if n_failed else "")
    if key:
        direction = "higher is better" if c["higher_is_better"] else "lower is better"
        ranked = f"ranked by `{key}` ({direction}; {c['why']})"
    else:
        ranked = "not ranked: no run has a reward, a win rate, or a training stage's held-out accuracy or loss"
    lines = ["# Run comparison", "", f"{count}; {ranked}. Only completed runs are ranked.", "",
             table(c["header"], c["rows"]), ""]
    if c["judge_legend"]:
        lines += ["**Win rates are not comparable across judges**: these runs were judged by different "
                  "feedback providers or settings" + (" and are ranked within each judge's runs" if key and
                                                      key.startswith("win/") else "") + ".", ""]
        lines += [f"- {line}" for line in c["judge_legend"]] + [""]
    lines += _budget_lines(c)
    lines.append("")
    if c["failed"]:
        lines += ["## Runs that did not complete", ""]
        lines += [f"- `{label}`: {status}" + (f": {cell(error, 300)}" if error else "") for label, status, error in
                  c["failed"]]
        lines.append("")
    if points:
        png = plots.frontier(points, key or "reward", out_dir / "frontier.png", kl_budget,
                             c["best"]["run"] if c["best"] else None, higher_is_better=c["higher_is_better"])
        lines += ["![metric vs KL frontier](" + str(png.relative_to(out_dir)) + ")", ""]
    stage_lines = stage_tables(c["records"])
    if stage_lines:
        lines += ["## Training stages", "", "Each stage's final training metrics (`train/`, the last logged values) "
                  "and held-out ones (`eval/`), as summary.json or metrics.jsonl hold them; timings left out.", ""]
        lines += stage_lines
    path = out_dir / "comparison.md"
    atomic_write_text(path, "\n".join(lines))
    return path, "\n".join(lines)
