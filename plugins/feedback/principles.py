"""Constitutions as data: principles with a critique request, a revision request and a
comparison question, loaded from our YAML format or from the critique/revision JSONL of
Hugging Face's llm-swarm CAI example (``{"index", "critic", "revision"}`` per line).

``constitution=<name>`` reads ``alignkit/conf/constitution/<name>.yaml``; anything with a
``/`` or a suffix is a file path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

from alignkit.core import ConfigError, DataError
from alignkit.core.records_io import iter_jsonl

FIELDS = ("id", "critique", "revision", "comparison")


@dataclass(frozen=True)
class Principle:
    id: str
    critique: str  # asked after a response: what is wrong with it under this principle
    revision: str  # asked after the critique: rewrite the response
    comparison: str  # asked of two responses: which is better under this principle


@dataclass(frozen=True)
class Constitution:
    name: str
    principles: tuple[Principle, ...]
    fewshot: tuple[tuple[dict, ...], ...] = field(default_factory=tuple)  # example chats shown before a critique

    def by_id(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise KeyError(principle_id)

    def sample(self, seed: int, *parts: Any) -> Principle:
        """The principle for one comparison or critique: a hash of (seed, parts), so the same
        pair gets the same principle in any batch, order or resumed run."""
        digest = hashlib.sha256(json.dumps([seed, *parts], sort_keys=True, ensure_ascii=False, default=str).encode())
        return self.principles[int.from_bytes(digest.digest()[:8], "big") % len(self.principles)]


def builtin_constitutions() -> list[str]:
    folder = files("alignkit.conf").joinpath("constitution")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve(spec: str) -> Path:
    spec = str(spec)
    if "/" not in spec and "\\" not in spec and not Path(spec).suffix:
        path = Path(str(files("alignkit.conf").joinpath("constitution", f"{spec}.yaml")))
        if not path.exists():
            raise ConfigError(f"no constitution named '{spec}'; the shipped ones are: "
                              f"{', '.join(builtin_constitutions())} (or give a .yaml / .jsonl path)")
        return path
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"constitution file {path} does not exist")
    return path


def load_constitution(spec: str, fewshot: str | None = None) -> Constitution:
    """Load a constitution by name or path; ``fewshot`` optionally names a JSONL of example chats."""
    path = resolve(spec)
    if path.suffix in (".yaml", ".yml"):
        constitution = _load_yaml(path)
    elif path.suffix == ".jsonl":
        constitution = _load_swarm_jsonl(path)
    else:
        raise ConfigError(f"constitution {path}: expected a .yaml or .jsonl file")
    if fewshot:
        constitution = Constitution(constitution.name, constitution.principles, load_fewshot(fewshot))
    return constitution


def _text(value: Any, path: Path, where: str, line: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError("expected a non-empty string", path=str(path), line=line, field=where)
    return value.strip()


def _load_yaml(path: Path) -> Constitution:
    from omegaconf import OmegaConf

    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:
        raise DataError(f"not valid YAML: {exc}", path=str(path)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("principles"), list) or not data["principles"]:
        raise DataError("expected a mapping with a non-empty list 'principles'", path=str(path), field="principles")
    principles = []
    seen: set[str] = set()
    for i, raw in enumerate(data["principles"]):
        if not isinstance(raw, dict):
            raise DataError("expected a mapping", path=str(path), field=f"principles[{i}]")
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise DataError(f"unknown key(s) {', '.join(unknown)}; a principle has {', '.join(FIELDS)}",
                            path=str(path), field=f"principles[{i}]")
        values = {k: _text(raw.get(k), path, f"principles[{i}].{k}") for k in FIELDS}
        if values["id"] in seen:
            raise DataError(f"duplicate principle id '{values['id']}'", path=str(path), field=f"principles[{i}].id")
        seen.add(values["id"])
        principles.append(Principle(**values))
    return Constitution(str(data.get("name") or path.stem), tuple(principles))


def _load_swarm_jsonl(path: Path) -> Constitution:
    """llm-swarm's format has no comparison question; one is phrased from the critique."""
    principles = []
    for number, raw in iter_jsonl(path):
        critique = _text(raw.get("critic"), path, "critic", number)
        revision = _text(raw.get("revision"), path, "revision", number)
        index = raw.get("index", number - 1)
        comparison = ("Which of the two assistant responses is better with regard to this request: "
                      f"\"{revision}\"")
        principles.append(Principle(f"{path.stem}-{index}", critique, revision, comparison))
    if not principles:
        raise DataError("no principles", path=str(path))
    return Constitution(path.stem, tuple(principles))


def load_fewshot(spec: str) -> tuple[tuple[dict, ...], ...]:
    """Example chats (``{"messages": [...]}`` per line) shown before each critique request."""
    path = Path(spec).expanduser()
    chats = []
    for number, raw in iter_jsonl(path, objects=False):
        msgs = raw.get("messages") if isinstance(raw, dict) else None
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str) for m in msgs):
            raise DataError("expected 'messages': a list of {role, content}", path=str(path), line=number,
                            field="messages")
        chats.append(tuple({"role": m["role"], "content": m["content"]} for m in msgs))
    return tuple(chats)


def principle_ids(principles: Sequence[Principle]) -> list[str]:
    return [p.id for p in principles]
