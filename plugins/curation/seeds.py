"""Seed task files: the human-written tasks Self-Instruct starts from.

The format of the Self-Instruct repository's ``seed_tasks.jsonl``, one JSON object a line::

    {"id": "seed_task_0", "name": "breakfast_suggestion", "instruction": "...",
     "instances": [{"input": "", "output": "..."}], "is_classification": false}

``instruction`` and at least one instance with a non-empty ``output`` are required; ``id``,
``name`` and ``is_classification`` (default false) are optional. An Alpaca-style record
(``instruction``, ``input``, ``output``) is read as a task with one instance. Errors name the
file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from alignkit.core.errors import DataError

SHIPPED = "seed_tasks.jsonl"
SHIPPED_LICENCE = "Apache-2.0 (written by the alignkit authors)"


@dataclass(frozen=True)
class SeedTask:
    id: str
    instruction: str
    instances: tuple[tuple[str, str], ...]  # (input, output)
    is_classification: bool


def shipped_path() -> Path:
    """The small seed file shipped with alignkit (``plugins/curation/data/seed_tasks.jsonl``)."""
    return Path(str(files("alignkit.plugins.curation").joinpath("data", SHIPPED)))


def _type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _text(raw: dict, key: str, spec: str, line: int, *, required: bool, field: str | None = None) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise DataError("missing", path=spec, line=line, field=field or key)
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {_type(value)}", path=spec, line=line, field=field or key)
    return value


def parse_task(raw: Any, spec: str, line: int) -> SeedTask:
    if not isinstance(raw, dict):
        raise DataError(f"expected a JSON object, got {_type(raw)}", path=spec, line=line)
    instruction = _text(raw, "instruction", spec, line, required=True)
    if not instruction.strip():
        raise DataError("empty instruction", path=spec, line=line, field="instruction")
    if "instances" in raw:
        items = raw["instances"]
        if not isinstance(items, list) or not items:
            raise DataError("expected a non-empty list of {input, output} objects", path=spec, line=line,
                            field="instances")
        instances = []
        for k, item in enumerate(items):
            if not isinstance(item, dict):
                raise DataError(f"expected an object, got {_type(item)}", path=spec, line=line, field=f"instances[{k}]")
            output = _text(item, "output", spec, line, required=True, field=f"instances[{k}].output")
            if not output.strip():
                raise DataError("empty output", path=spec, line=line, field=f"instances[{k}].output")
            instances.append((_text(item, "input", spec, line, required=False, field=f"instances[{k}].input"), output))
    else:
        output = _text(raw, "output", spec, line, required=True)
        if not output.strip():
            raise DataError("empty output", path=spec, line=line, field="output")
        instances = [(_text(raw, "input", spec, line, required=False), output)]
    flag = raw.get("is_classification", False)
    if not isinstance(flag, bool):
        raise DataError(f"expected true or false, got {_type(flag)}", path=spec, line=line, field="is_classification")
    ident = raw.get("id", f"line_{line}")
    return SeedTask(id=str(ident), instruction=instruction.strip(), instances=tuple(instances), is_classification=flag)


def read_seed_tasks(path: str | Path, spec: str | None = None) -> list[SeedTask]:
    """Every task of a seed file (JSONL); blank lines are skipped but counted."""
    spec = spec or str(path)
    file = Path(path)
    if not file.is_file():
        raise DataError("file not found", path=spec)
    tasks = []
    with open(file, "rb") as fh:
        for line, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not valid UTF-8 (byte 0x{raw[exc.start:exc.start + 1].hex()} at column "
                                f"{exc.start + 1})", path=spec, line=line) from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=spec, line=line) from None
            tasks.append(parse_task(record, spec, line))
    if not tasks:
        raise DataError("no seed tasks", path=spec)
    return tasks


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
