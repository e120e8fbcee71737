"""The on-disk state of a Self-Instruct generation: resumable, and never half-written.

    <output_dir>/
      config.json            what decides the generated data (seed file hash, teacher, settings)
      batches/000000.json    one file per request batch: its records and rejection counts
      data.jsonl             the generated tasks (Alpaca fields + is_classification)
      metadata.json          provenance: seed file, teacher and the licence of its outputs, counts

Every file is written to a temporary name in the same folder and renamed, so a killed
generation leaves each batch either complete or absent. Batch k is a fixed function of the
seed, k and the batches before it, so a rerun redoes the missing batch and reaches the
same data as an uninterrupted run: nothing is generated twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from alignkit.core.errors import ConfigError, DataError
from alignkit.core.rundir import atomic_write_json, atomic_write_text

CONFIG = "config.json"
BATCHES = "batches"
DATA = "data.jsonl"
METADATA = "metadata.json"


def default_root() -> Path:
    raw = os.environ.get("ALIGNKIT_CACHE")
    return (Path(raw).expanduser() if raw else Path.home() / ".cache" / "alignkit") / "self_instruct"


class GenerationStore:
    """Reads and writes one generation folder."""

    def __init__(self, folder: str | Path, identity: Mapping[str, Any]) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.identity = json.loads(json.dumps(dict(identity), sort_keys=True, default=str))
        self.batches_dir = self.folder / BATCHES

    def open(self) -> None:
        """Create the folder, or check that it holds the same generation (else ConfigError)."""
        file = self.folder / CONFIG
        if file.exists():
            try:
                found = json.loads(file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", path=str(file), line=exc.lineno) from None
            if found != self.identity:
                keys = sorted(k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k))
                raise ConfigError(
                    f"{self.folder} holds a Self-Instruct generation with other settings (differing: "
                    f"{', '.join(keys)}); set data.output_dir to another folder, or delete this one to start over")
        else:
            atomic_write_json(file, self.identity)
        self.batches_dir.mkdir(parents=True, exist_ok=True)

    def batch_path(self, k: int) -> Path:
        return self.batches_dir / f"{k:06d}.json"

    def batches(self) -> list[dict[str, Any]]:
        """The complete batches 0, 1, ... in order (a batch after a gap is ignored and redone)."""
        out = []
        k = 0
        while True:
            path = self.batch_path(k)
            if not path.exists():
                break
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
            k += 1
        for stray in self.batches_dir.glob(".*"):  # temporary files of a killed writer
            stray.unlink(missing_ok=True)
        return out

    def write_batch(self, k: int, batch: Mapping[str, Any]) -> None:
        atomic_write_json(self.batch_path(k), dict(batch))

    def write_data(self, records: list[Mapping[str, Any]]) -> Path:
        path = self.folder / DATA
        atomic_write_text(path, "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in records))
        return path

    def write_metadata(self, metadata: Mapping[str, Any]) -> Path:
        path = self.folder / METADATA
        atomic_write_json(path, dict(metadata))
        return path

    def metadata(self) -> dict[str, Any] | None:
        path = self.folder / METADATA
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
