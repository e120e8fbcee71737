"""``data=mixture``: several data sources mixed by weights or per-source caps (FLAN-style).

Each source is a nested data config (``{name: files, sft: a.jsonl}``, ``{name: demo}``, any
registered source) built through the registry. For each kind of data (sft, preferences,
prompts) and the train split, the number of records taken from source i is:

* no weights, no ``size``: all of its records, at most ``cap_i`` (FLAN/T5's
  examples-proportional mixing with a cap: a huge source cannot drown the others);
* no weights, ``size``: ``size`` records shared in proportion to min(n_i, cap_i);
* weights: shares w_i / sum(w). The total is ``size`` when given, else the largest total
  that repeats no record (min_i of min(n_i, cap_i) / share_i). A source asked for more
  records than it has repeats them (whole shuffled passes), counted as ``repeated``;
  ``cap_i`` still bounds its count.

Counts are apportioned by largest remainder. Which records are taken, their prompt styles
(``templates``) and the final interleaving are fixed functions of ``seed``; each source
draws from its own random stream, so adding a source does not change what the others give.
The eval split takes every eval record of every source (``max_eval`` per source at most).
``manifest()`` says how many records came from each source; the plugin writes it to
``data_manifest.json`` in the run directory.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from alignkit.core.errors import ConfigError
from alignkit.plugins.curation.curate import CurateConfig, curate
from alignkit.plugins.curation.records import KINDS, check_split, example, plain, to_dataset
from alignkit.plugins.curation.templates import TemplateConfig, render

log = logging.getLogger("alignkit.curation")


@dataclass
class SourceConfig:
    """One source of a mixture (``data.sources.<label>``)."""

    data: Dict[str, Any] = field(default_factory=dict)  # a data config: {name: files, sft: ...}
    weight: Optional[float] = None  # relative sampling weight; null: see the module docstring
    cap: Optional[int] = None  # at most this many train records of each kind from this source
    max_eval: Optional[int] = None  # at most this many eval records of each kind
    templates: Optional[TemplateConfig] = None  # null: the mixture's templates
    curate: CurateConfig = field(default_factory=CurateConfig)  # applied to its SFT train records first


@dataclass
class MixtureConfig:
    """Options of ``data=mixture`` (conf/data/mixture.yaml)."""

    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    size: Optional[int] = None  # train records of each kind in all; null: see the module docstring
    templates: TemplateConfig = field(default_factory=TemplateConfig)  # prompt styles of SFT records
    seed: int = 0


def apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """``total`` split in proportion to ``shares`` by largest remainder (ties: first listed)."""
    mass = sum(shares.values())
    if total <= 0 or mass <= 0:
        return {k: 0 for k in shares}
    exact = {k: total * v / mass for k, v in shares.items()}
    counts = {k: int(math.floor(x)) for k, x in exact.items()}
    order = sorted(shares, key=lambda k: (-(exact[k] - counts[k]), list(shares).index(k)))
    for k in order[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def plan_counts(available: dict[str, int], weights: dict[str, float | None], caps: dict[str, int | None],
                size: int | None) -> dict[str, int]:
    """Records to take from each source (see the module docstring)."""
    usable = {k: n if caps.get(k) is None else min(n, int(caps[k])) for k, n in available.items()}
    weighted = any(weights.get(k) is not None for k in available)
    if not weighted and size is None:
        return usable
    shares = {k: (1.0 if weights.get(k) is None else float(weights[k])) for k in available} if weighted \
        else {k: float(v) for k, v in usable.items()}
    mass = sum(shares.values())
    if mass <= 0:
        return {k: 0 for k in available}
    if size is None:
        total = min((usable[k] / (shares[k] / mass) for k in available if shares[k] > 0), default=0)
        total = int(math.floor(total + 1e-9))
    else:
        total = int(size)
    counts = apportion(total, shares)
    return {k: c if caps.get(k) is None else min(c, int(caps[k])) for k, c in counts.items()}


class MixtureSource:
    """A ``DataSource`` mixing other sources (see the module docstring)."""

    def __init__(self, cfg: MixtureConfig, registry: Any = None, run: Any = None) -> None:
        check_config(cfg)
        self.cfg = cfg
        self.registry = registry
        self.run = run  # the RunContext the nested sources are built with
        self.manifest_sink: Callable[[dict[str, Any]], None] | None = None
        self._sources: dict[str, Any] | None = None
        self._cache: dict[tuple[str, str], Any] = {}
        self._curated: dict[str, list[dict[str, Any]]] = {}
        self._manifest: dict[str, Any] = {
            "data": "mixture", "seed": cfg.seed, "size": cfg.size,
            "sources": {label: {"data": plain(s.data), "weight": s.weight, "cap": s.cap, "max_eval": s.max_eval}
                        for label, s in cfg.sources.items()},
        }

    # -- nested sources ------------------------------------------------------------------
    def sources(self) -> dict[str, Any]:
        if self._sources is None:
            from alignkit.core.options import build_component

            if self.registry is None:
                raise ConfigError("data 'mixture' builds its sources through the run's plugins, and it was built "
                                  "without them: build it as the core does, factory(options, ctx)")
            built = {}
            for label, source in self.cfg.sources.items():
                node = dict(plain(source.data))
                # the same ctx: a nested self_instruct source takes the registry from it too
                built[label] = build_component(self.registry, "data_source", str(node["name"]), node, self.run,
                                               group="data source")
            self._sources = built
        return self._sources

    def _train_rows(self, label: str, kind: str) -> list[dict[str, Any]] | None:
        """A source's train records of ``kind``, curated (SFT) as its ``curate`` says."""
        key = f"{label}:{kind}"
        if key not in self._curated:
            dataset = getattr(self.sources()[label], kind)("train")
            rows = [dict(r) for r in dataset] if dataset is not None else None
            spec = self.cfg.sources[label].curate
            if rows and kind == "sft" and spec.active:
                result = curate([example(r["messages"]) for r in rows], spec, self.registry)
                self._manifest.setdefault("curation", {})[label] = {
                    "before": len(rows), "after": len(result.kept), "removed": result.removed,
                    "scorer": result.scorer}
                rows = [rows[i] for i in result.kept]
            self._curated[key] = rows
        return self._curated[key]

    # -- mixing ----------------------------------------------------------------------------
    def _mix(self, kind: str, split: str) -> Any:
        key = (kind, split)
        if key in self._cache:
            return self._cache[key]
        cfg = self.cfg
        per_source: dict[str, list[dict[str, Any]]] = {}
        for label in cfg.sources:
            if split == "train":
                rows = self._train_rows(label, kind)
            else:
                dataset = getattr(self.sources()[label], kind)("eval")
                rows = [dict(r) for r in dataset] if dataset is not None else None
            if rows:
                per_source[label] = rows
        report: dict[str, Any] = {}
        mixed: list[tuple[str, dict[str, Any]]] = []
        if split == "train":
            counts = plan_counts({k: len(v) for k, v in per_source.items()},
                                 {k: cfg.sources[k].weight for k in per_source},
                                 {k: cfg.sources[k].cap for k in per_source}, cfg.size)
        else:
            counts = {k: len(v) if cfg.sources[k].max_eval is None else min(len(v), cfg.sources[k].max_eval)
                      for k, v in per_source.items()}
        for label, rows in per_source.items():
            rng = random.Random(f"{cfg.seed}:{label}:{kind}:{split}")
            order = list(range(len(rows)))
            rng.shuffle(order)
            cap = cfg.sources[label].cap if split == "train" else None
            if cap is not None:
                order = order[:cap]
            wanted = counts[label]
            picked = (order * (wanted // len(order)) + order[: wanted % len(order)]) if order else []
            taken = [rows[i] for i in picked]
            entry: dict[str, Any] = {"available": len(rows), "taken": len(taken),
                                     "unique": len(set(picked)), "repeated": len(taken) - len(set(picked))}
            templates = cfg.sources[label].templates or cfg.templates
            if kind == "sft" and templates.active:
                pool = self._train_rows(label, "sft") or rows
                taken, styles = render(taken, pool, templates, random.Random(f"{cfg.seed}:{label}:templates:{split}"))
                entry["templates"] = styles
            report[label] = entry
            mixed.extend((label, row) for row in taken)
        random.Random(f"{cfg.seed}:{kind}:{split}:interleave").shuffle(mixed)
        total = len(mixed)
        for entry in report.values():
            entry["share"] = round(entry["taken"] / total, 4) if total else 0.0
        self._manifest.setdefault(kind, {})[split] = {"total": total, "sources": report}
        rows = [self._clean(kind, row) for _, row in mixed]
        self._cache[key] = to_dataset(kind, rows)
        if self.manifest_sink is not None:
            self.manifest_sink(self.manifest())
        if split == "train" and total:
            log.info("mixture: %s train records: %s", kind,
                     ", ".join(f"{k} {v['taken']}" for k, v in report.items()))
        return self._cache[key]

    @staticmethod
    def _clean(kind: str, row: dict[str, Any]) -> dict[str, Any]:
        columns = {"sft": ("messages",), "prompts": ("prompt",),
                   "preferences": ("prompt", "chosen", "rejected", "strength", "source")}[kind]
        return {c: row[c] for c in columns if c in row}

    # -- DataSource ------------------------------------------------------------------------
    def sft(self, split: str):
        check_split(split)
        return self._mix("sft", split)

    def preferences(self, split: str):
        check_split(split)
        return self._mix("preferences", split)

    def prompts(self, split: str):
        check_split(split)
        return self._mix("prompts", split)

    def manifest(self) -> dict[str, Any]:
        """How many records each source gave, per kind and split loaded so far."""
        return {k: v for k, v in self._manifest.items() if k not in KINDS} | {
            k: self._manifest[k] for k in KINDS if k in self._manifest}


def check_config(cfg: MixtureConfig) -> None:
    """Checks that need no data: at least one source, each with a data config and sane numbers."""
    if not cfg.sources:
        raise ConfigError("data 'mixture' has no sources: add data.sources.<label>.data.name=<source> "
                          "(see conf/data/mixture.yaml)")
    if cfg.size is not None and cfg.size < 0:
        raise ConfigError(f"data 'mixture': size must be >= 0, not {cfg.size}")
    for label, source in cfg.sources.items():
        where = f"data 'mixture': source '{label}'"
        if not source.data or not source.data.get("name"):
            raise ConfigError(f"{where}: 'data' needs a 'name' (a data source such as demo, files, self_instruct)")
        if str(source.data.get("name")) == "mixture":
            raise ConfigError(f"{where}: a mixture cannot contain a mixture; list its sources here instead")
        if source.weight is not None and not (math.isfinite(source.weight) and source.weight >= 0):
            raise ConfigError(f"{where}: weight must be a number >= 0, not {source.weight}")
        for name in ("cap", "max_eval"):
            value = getattr(source, name)
            if value is not None and value < 0:
                raise ConfigError(f"{where}: {name} must be >= 0, not {value}")
        (source.templates or cfg.templates).weights()


def mixture_source(options: MixtureConfig, ctx: Any = None) -> MixtureSource:
    """Factory of ``data=mixture``: ``options`` validated by the core; ``ctx`` (the RunContext) lends
    the run's registry, through which the nested sources and the teacher are built."""
    return MixtureSource(options, getattr(ctx, "registry", None), run=ctx)
