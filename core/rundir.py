"""The run directory contract (other tools read it; keep it stable).

    <run_dir>/.hydra/config.yaml   the composed config (written by Hydra)
    <run_dir>/metrics.jsonl        one JSON object per logged step: stage, step, time, metrics
    <run_dir>/summary.json         pipeline, status, per-stage status/metrics/artifacts; while running
                                   also the owning process (owner: pid, host) and a heartbeat time;
                                   data_files: absolute path and sha256 of every data file read
    <run_dir>/NN-<stage>/DONE      written when the stage completed; resume skips it

The default run directory is ``runs/<pipeline>-<model>-<hash of the command's overrides>``
(``run_name``), so the same command finds the same directory again and resumes it.

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written summary or model. Under ``accelerate launch`` only the main process writes;
the others keep the same summary in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from alignkit.core import distributed
from alignkit.core.types import StageResult, stage_dir_name

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
DONE = "DONE"
HEARTBEAT_EVERY = 10.0  # seconds: metric writes refresh summary.json's heartbeat at most this often
# A "running" run on another machine (whose pid cannot be checked from here) whose heartbeat is
# older than this is reported as interrupted.
STALE_AFTER = 1800.0
RUN_NAME_RESOLVER = "alignkit_run_name"
# Overrides that say how a run is executed, not what it computes: they do not change its directory.
_NAME_IGNORES = ("launcher.",)
# Keys of the data config that are never file paths, even when a file of that name exists.
_NOT_PATHS = ("name", "format", "on_bad_record", "prompt_set")

log = logging.getLogger(__name__)


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


def logged_numbers(records: Iterable[Mapping[str, Any]], stage: str) -> Iterator[tuple[int, str, float]]:
    """``(step, key, value)`` for every number ``stage`` logged to metrics.jsonl, in order (the
    record's own ``stage``, ``step`` and ``time`` fields and booleans left out)."""
    for record in records:
        if record.get("stage") != stage:
            continue
        for key, value in record.items():
            if key in ("stage", "step", "time") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            yield int(record.get("step", 0)), key, value


def run_name(pipeline: Any, model: Any, overrides: Any) -> str:
    """``<pipeline>-<model>-<8 hex digits>``: the default run directory's name (a Hydra resolver,
    conf/config.yaml). The digits hash the command's overrides, sorted, without the ``launcher.*``
    ones, so rerunning the same command (in any order) resumes the same directory and any other
    command gets its own. A swept group shows its values: ``sft+dpo``."""
    items = [str(o) for o in (overrides or [])]
    kept = sorted(o for o in items if not o.lstrip("+~").startswith(_NAME_IGNORES))
    digest = hashlib.sha256("\n".join(kept).encode("utf-8")).hexdigest()[:8]

    def part(group: str, value: Any) -> str:
        swept = [o.split("=", 1)[1] for o in items if o.startswith(f"{group}=") and "," in o]
        text = "+".join(swept[0].split(",")) if swept else Path(str(value).rstrip("/")).name
        return re.sub(r"[^-\w.+]", "_", text.removesuffix(".gguf")) or group

    return f"{part('pipeline', pipeline)}-{part('model', model)}-{digest}"


def register_resolvers() -> None:
    """Register ``${alignkit_run_name:...}`` for conf/config.yaml's ``hydra.run.dir`` / ``hydra.sweep.dir``.
    Cached like Hydra's ``now``: every job of a sweep resolves the sweep folder to the same name."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RUN_NAME_RESOLVER):
        OmegaConf.register_new_resolver(RUN_NAME_RESOLVER, run_name, use_cache=True)


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    now = _process_start(pid)
    return start is None or now is None or now == start


def owner_gone(summary: Mapping[str, Any], now: float | None = None) -> str | None:
    """Why the process that owns a "running" summary is no longer running it, or None when it
    may still be: its pid is gone (same host), or its heartbeat is stale (another host)."""
    owner = summary.get("owner") or {}
    pid, host = owner.get("pid"), owner.get("host")
    if pid is None or host is None:  # written by an older alignkit: nothing to check
        return None
    if host == socket.gethostname():
        return None if _pid_alive(int(pid), owner.get("pid_start")) else f"process {pid} on {host} is gone"
    beat = summary.get("heartbeat")
    if beat is not None and (now if now is not None else time.time()) - float(beat) > STALE_AFTER:
        return f"no heartbeat from process {pid} on {host} since {_clock(float(beat))}"
    return None


def true_status(summary: Mapping[str, Any], now: float | None = None) -> str:
    """The summary's status, except that a "running" run whose process is gone is "interrupted"
    (killed, out of memory, the machine restarted: nothing could write its end)."""
    status = str(summary.get("status", "unknown"))
    if status == "running" and owner_gone(summary, now):
        return "interrupted"
    return status


def _clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def file_sha256(path: Path, sync: bool = False) -> str:
    """The file's sha256, read in 1 MiB blocks; ``sync``: also fsync it, so its data reaches the
    disk before whatever records the hash (a checkpoint's manifest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
        if sync:
            try:
                os.fsync(fh.fileno())
            except OSError:  # platforms that cannot fsync a read-only handle
                pass
    return digest.hexdigest()


def data_file_paths(node: Any, prefix: str = "data") -> dict[str, Path]:
    """``{"data.sft": Path("train.jsonl"), ...}``: every value of the data config that names an
    existing file (mixtures' nested sources included)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    found: dict[str, Path] = {}
    items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (Mapping, list)):
            found.update(data_file_paths(value, dotted))
        elif isinstance(value, str) and key not in _NOT_PATHS and value and "\n" not in value:
            path = Path(value).expanduser()
            try:
                if path.is_file():
                    found[dotted] = path
            except OSError:  # a name too long to be a path
                pass
    return found


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, path: str | os.PathLike[str], pipeline: str = "", *, writer: bool | None = None) -> None:
        self.path = Path(path).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.pipeline = pipeline
        self.writer = distributed.is_main_process() if writer is None else writer  # False: read-only
        self.summary = self._read_summary()
        self._beat = 0.0
        if pipeline:
            self.summary["pipeline"] = pipeline
        gone = self.summary.get("status") == "running" and owner_gone(self.summary)
        if gone and self.writer:
            running = [s for s, r in self.summary.get("stages", {}).items() if r.get("status") == "running"]
            log.warning("run directory %s: the run was interrupted (%s)%s", self.path, gone,
                        f" during stage '{running[0]}'" if running else "")

    def _read_summary(self) -> dict[str, Any]:
        file = self.path / SUMMARY
        if file.exists():
            return json.loads(file.read_text(encoding="utf-8"))
        return {"pipeline": self.pipeline, "status": "running", "stages": {}}

    def true_status(self) -> str:
        """``summary.json``'s status, "interrupted" when it says running and its process is gone."""
        return true_status(self.summary)

    def record_data_files(self, data_cfg: Any) -> None:
        """Store the absolute path and sha256 of every data file of ``data_cfg`` under
        ``data_files`` in summary.json, so the run can be evaluated or resumed from another
        folder; warn when a file changed since this run directory last recorded it."""
        if not self.writer:  # the main process hashes, once
            return
        old = self.summary.get("data_files") or {}
        files: dict[str, Any] = {}
        for key, path in data_file_paths(data_cfg).items():
            path = path.resolve()
            stat = path.stat()
            before = old.get(key) or {}
            same = (before.get("path") == str(path) and before.get("bytes") == stat.st_size
                    and before.get("mtime") == stat.st_mtime)
            sha = before["sha256"] if same and before.get("sha256") else file_sha256(path)
            if before.get("sha256") and before["sha256"] != sha:
                log.warning("data file %s (%s) changed since this run directory recorded it "
                            "(sha256 %s..., now %s...): finished stages keep what they learned from the old "
                            "one; use hydra.run.dir=<a new folder> for a fresh run", path, key,
                            before["sha256"][:12], sha[:12])
            files[key] = {"path": str(path), "sha256": sha, "bytes": stat.st_size, "mtime": stat.st_mtime}
        if files or old:
            self.summary["data_files"] = files

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
        if time.time() - self._beat >= HEARTBEAT_EVERY:  # the heartbeat: cheap, at most every few seconds
            self.write_summary()

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
        if not self.writer:
            return
        self._beat = time.time()
        if self.summary.get("status") == "running":  # this process owns the run: readers can check it
            pid = os.getpid()
            self.summary["owner"] = {"pid": pid, "host": socket.gethostname(), "pid_start": _process_start(pid)}
        self.summary["heartbeat"] = round(self._beat, 3)
        atomic_write_json(self.path / SUMMARY, self.summary)
