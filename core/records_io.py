"""JSONL files that stages hand to each other (AI labels, revised answers, rollouts).

Written whole through a temporary file and a rename, so a stopped stage never leaves a
half-written file for a resumed run to trust; read back with errors that name file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from alignkit.core.errors import DataError
from alignkit.core.rundir import atomic_write_text


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write ``rows`` as JSON lines, atomically; returns how many."""
    lines = [json.dumps(dict(row), ensure_ascii=False) for row in rows]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def iter_jsonl(path: Path, *, objects: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of each non-blank line; a line that is not JSON (or, with
    ``objects``, not a JSON object) raises ``DataError`` naming file and line."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg}", path=str(path), line=number) from exc
            if objects and not isinstance(row, dict):
                raise DataError("expected a JSON object", path=str(path), line=number)
            yield number, row


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file; a bad line raises ``DataError`` naming file and line."""
    return [row for _, row in iter_jsonl(path)]
