"""The run directory contract (other tools read it; keep it stable).

    <run_dir>/.hydra/config.yaml   the composed config (written by Hydra)
    <run_dir>/metrics.jsonl        one JSON object per logged step: stage, step, time, metrics
    <run_dir>/summary.json         pipeline, status, per-stage status/metrics/artifacts
    <run_dir>/NN-<stage>/DONE      written when the stage completed; resume skips it

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written summary or model. Under ``accelerate launch`` only the main process writes;
the others keep the same summary in memory.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from alignkit.core import distributed
from alignkit.core.types import StageResult, stage_dir_name

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
DONE = "DONE"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend: reports are drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure as PNG the way run-directory files are written (a temporary
    file, then a rename), and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80, bbox_inches="tight")
    tmp.replace(path)
    pyplot().close(fig)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _clean(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # JSON has no NaN; keep it visible
        out[key] = value
    return out


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, path: str | os.PathLike[str], pipeline: str = "", *, writer: bool | None = None) -> None:
        self.path = Path(path).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.pipeline = pipeline
        self.writer = distributed.is_main_process() if writer is None else writer  # False: read-only
        self.summary = self._read_summary()
        if pipeline:
            self.summary["pipeline"] = pipeline

    def _read_summary(self) -> dict[str, Any]:
        file = self.path / SUMMARY
        if file.exists():
            return json.loads(file.read_text(encoding="utf-8"))
        return {"pipeline": self.pipeline, "status": "running", "stages": {}}

    def stage_dir(self, index: int, stage: str) -> Path:
        folder = self.path / stage_dir_name(index, stage)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def is_done(self, index: int, stage: str) -> bool:
        return (self.path / stage_dir_name(index, stage) / DONE).exists()

    def stage_result(self, stage: str) -> StageResult:
        record = self.summary["stages"].get(stage, {})
        return StageResult(metrics=dict(record.get("metrics", {})), artifacts=dict(record.get("artifacts", {})))

    def log_metrics(self, stage: str, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.writer:
            return
        record = {"stage": stage, "step": step, "time": round(time.time(), 3), **_clean(metrics)}
        with open(self.path / METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def set_stage(self, stage: str, status: str, result: StageResult | None = None) -> None:
        record = self.summary["stages"].setdefault(stage, {"status": status, "metrics": {}, "artifacts": {}})
        record["status"] = status
        if result is not None:
            record["metrics"] = _clean(result.metrics)
            record["artifacts"] = dict(result.artifacts)
        self.write_summary()

    def mark_done(self, index: int, stage: str, result: StageResult) -> None:
        self.set_stage(stage, "completed", result)
        if self.writer:
            atomic_write_text(self.path / stage_dir_name(index, stage) / DONE, time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def finish(self, status: str, error: str | None = None) -> None:
        self.summary["status"] = status
        if error:
            self.summary["error"] = error
        else:
            self.summary.pop("error", None)
        self.write_summary()

    def write_summary(self) -> None:
        if self.writer:
            atomic_write_json(self.path / SUMMARY, self.summary)
