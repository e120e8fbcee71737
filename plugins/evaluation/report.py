"""Reports: ``report.md`` + ``plots/`` for one run, and the comparison of many runs.

The comparison reads only run directories (``summary.json``, ``.hydra/overrides.yaml``,
``.hydra/config.yaml``), so it works on any finished run or Hydra multirun folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from alignkit.core.rundir import METRICS, SUMMARY, atomic_write_text
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
                     f"{fmt(m['win/win_rate'])} [{fmt(m['win/win_rate_ci_low'])}, {fmt(m['win/win_rate_ci_high'])}]",
                     "-", f"ties {fmt(m['win/tie_rate'])}, losses {fmt(m['win/loss_rate'])}, n={int(m['win/n'])}"])
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


def find_runs(dirs: Sequence[Path]) -> list[Path]:
    """Run directories among ``dirs``: each one that holds ``summary.json``, else its sub-folders
    that do (a Hydra multirun folder: ``0/``, ``1/``, ...), in numeric order."""
    runs: list[Path] = []
    for d in map(Path, dirs):
        if (d / SUMMARY).exists():
            runs.append(d)
            continue
        found = [p for p in d.rglob(SUMMARY) if ".hydra" not in p.parts]
        subs = sorted((p.parent for p in found),
                      key=lambda p: [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.relative_to(d).parts])
        runs.extend(subs)
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


def swept_parameters(runs: Sequence[Path]) -> tuple[list[str], list[dict[str, str]]]:
    """Parameters that differ between runs: from their command-line overrides, or (runs started
    separately with the same overrides) from their composed configs."""
    values = [run_overrides(r) for r in runs]
    keys = sorted({k for v in values for k in v})
    swept = [k for k in keys if len({v.get(k, "") for v in values}) > 1]
    if swept or len(runs) < 2:
        return swept, values
    import yaml

    configs = []
    for r in runs:
        file = r / ".hydra" / "config.yaml"
        configs.append(_flat(yaml.safe_load(file.read_text())) if file.exists() else {})
    keys = sorted({k for c in configs for k in c if not k.startswith("hydra.")})
    swept = [k for k in keys if len({c.get(k, "") for c in configs}) > 1][:8]
    return swept, configs


def run_record(run: Path) -> dict[str, Any]:
    summary = json.loads((run / SUMMARY).read_text())
    evaluation = summary.get("stages", {}).get("evaluate", {})
    return {"run": str(run), "status": summary.get("status", "?"), "metrics": evaluation.get("metrics", {})}


def main_metric(records: Sequence[Mapping[str, Any]], metric: str | None) -> str | None:
    """The reward that ranks runs: ``metric`` when given, else the first ``reward/<name>/policy_mean``
    every evaluated run has, else the win rate."""
    evaluated = [r["metrics"] for r in records if r["metrics"]]
    if not evaluated:
        return None
    if metric:
        return metric if metric.startswith(("reward/", "win/", "diversity/", "safety/", "sycophancy/", "kl/",
                                             "length/", "entropy/")) else f"reward/{metric}/policy_mean"
    common = set.intersection(*(set(m) for m in evaluated))
    for key in sorted(k for k in evaluated[0] if k.startswith("reward/") and k.endswith("/policy_mean")):
        if key in common:
            return key
    return "win/win_rate" if "win/win_rate" in common else None


def comparison(dirs: Sequence[Path], kl_budget: float | None = None, metric: str | None = None) -> dict[str, Any]:
    """The runs under ``dirs``, their swept parameters, table rows, frontier points and the best run."""
    runs = find_runs(dirs)
    if not runs:
        from alignkit.core.errors import ConfigError

        raise ConfigError(f"no run directory (a folder with {SUMMARY}) under: {', '.join(map(str, dirs))}")
    base = Path(dirs[0]).resolve()
    swept, values = swept_parameters(runs)
    records = [run_record(r) for r in runs]
    key = main_metric(records, metric)
    header = ["run", "status", *swept, key or "reward", "gain", "win rate", "KL/resp", "KL/token", "length",
              "distinct-2", "refusal (harmful)", "over-refusal", "sycophancy"]
    rows, points = [], []
    gain_key = key.replace("/policy_mean", "/gain") if key and key.endswith("/policy_mean") else None
    for run, rec, vals in zip(runs, records, values):
        m = rec["metrics"]
        label = str(run.relative_to(base)) if run.is_relative_to(base) and run != base else run.name
        rows.append([label, rec["status"], *[vals.get(k, "default") for k in swept], fmt(m.get(key)) if key else "-",
                     fmt(m.get(gain_key)) if gain_key else "-", fmt(m.get("win/win_rate")),
                     fmt(m.get("kl/per_sequence")), fmt(m.get("kl/per_token")), fmt(m.get("length/policy_mean")),
                     fmt(m.get("diversity/distinct_2_policy")), fmt(m.get("safety/refusal_harmful_policy")),
                     fmt(m.get("safety/over_refusal_policy")), fmt(m.get("sycophancy/policy"))])
        if key and key in m and "kl/per_sequence" in m:
            short = ", ".join(f"{k.rpartition('.')[2]}={vals.get(k, 'default')}" for k in swept) or label
            points.append({"run": label, "label": short, "kl": float(m["kl/per_sequence"]), "reward": float(m[key])})
    eligible = [p for p in points if kl_budget is None or p["kl"] <= kl_budget]
    best = max(eligible, key=lambda p: p["reward"]) if eligible else None
    return {"runs": runs, "swept": swept, "key": key, "header": header, "rows": rows, "points": points,
            "best": best, "kl_budget": kl_budget}


def compare_runs(dirs: Sequence[Path], out_dir: Path | None = None, kl_budget: float | None = None,
                 metric: str | None = None) -> tuple[Path, str]:
    """Write ``comparison.md`` and ``frontier.png`` for the runs under ``dirs``; returns the
    markdown path and text (``alignkit report`` prints it)."""
    c = comparison(dirs, kl_budget, metric)
    out_dir = Path(out_dir) if out_dir else Path(dirs[0])
    key, best, points = c["key"], c["best"], c["points"]
    lines = ["# Run comparison", "", f"{len(c['runs'])} runs; ranked by `{key or 'nothing: no run has a reward'}`.",
             "", table(c["header"], c["rows"]), ""]
    if best is not None:
        where = f"with KL ≤ {kl_budget:g} nats per response" if kl_budget is not None else "(no KL budget given)"
        lines.append(f"**Best run {where}: `{best['run']}`** ({best['label']}): {key} = {fmt(best['reward'])}, "
                     f"KL = {fmt(best['kl'])}.")
    elif kl_budget is not None:
        lines.append(f"No run stays within the KL budget of {kl_budget:g} nats per response.")
    lines.append("")
    if points:
        png = plots.frontier(points, key or "reward", out_dir / "frontier.png", kl_budget,
                             best["run"] if best else None)
        lines += ["![reward vs KL frontier](" + str(png.relative_to(out_dir)) + ")", ""]
    path = out_dir / "comparison.md"
    atomic_write_text(path, "\n".join(lines))
    return path, "\n".join(lines)
