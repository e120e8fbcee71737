"""``alignkit runs [DIR]``: the run directories under DIR (default ``runs/``) with their true
status; ``alignkit resume RUN_DIR``: the overrides that rerun a run in its own directory."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from alignkit.core.rundir import SUMMARY, owner_gone, true_status

DEFAULT_ROOT = "runs"


def find_runs(root: Path) -> Iterator[Path]:
    """Every folder under ``root`` holding a summary.json (not looking inside a run's own folders)."""
    for folder, subdirs, names in os.walk(root):
        if SUMMARY in names:
            subdirs.clear()
            yield Path(folder)
        else:
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))


def run_row(run_dir: Path) -> dict[str, Any]:
    """One line of ``alignkit runs``: status (true), pipeline, stages done, last update, note."""
    file = run_dir / SUMMARY
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return {"status": "unreadable", "pipeline": "?", "done": "-", "updated": file.stat().st_mtime,
                "dir": run_dir, "note": f"{file}: {exc}"}
    status = true_status(summary)
    stages = summary.get("stages") or {}
    done = [name for name, record in stages.items() if record.get("status") == "completed"]
    at = [name for name, record in stages.items() if record.get("status") in ("running", "waiting", "failed")]
    note = ""
    if status == "interrupted":
        note = f"{owner_gone(summary)}" + (f", in stage {at[0]}" if at else "")
    elif status == "failed":
        note = str(summary.get("error") or "").strip().splitlines()[0:1]
        note = (note[0][:100] if note else "") + (f" (stage {at[0]})" if at else "")
    elif status == "waiting":
        note = str(summary.get("message") or "").splitlines()[0][:100] if summary.get("message") else ""
    elif status == "running" and at:
        note = f"in stage {at[0]}"
    return {"status": status, "pipeline": summary.get("pipeline") or "?", "done": ",".join(done) or "-",
            "updated": float(summary.get("heartbeat") or file.stat().st_mtime), "dir": run_dir, "note": note}


def runs_command(argv: Sequence[str], out=None) -> int:
    parser = argparse.ArgumentParser(prog="alignkit runs",
                                     description="List run directories with their true status (a killed run "
                                                 "shows as interrupted), pipeline, finished stages, last update.")
    parser.add_argument("dir", nargs="?", type=Path, default=Path(DEFAULT_ROOT),
                        help=f"a folder of runs (default: {DEFAULT_ROOT}/)")
    ns = parser.parse_args(list(argv))
    out = out or sys.stdout
    if not ns.dir.is_dir():
        print(f"alignkit runs: error: {ns.dir} is not a folder (run directories are under {DEFAULT_ROOT}/ "
              f"unless hydra.run.dir chose another; give that folder)", file=sys.stderr)
        return 2
    rows = sorted((run_row(d) for d in find_runs(ns.dir)), key=lambda r: r["updated"])
    if not rows:
        print(f"alignkit runs: no run directories under {ns.dir}", file=sys.stderr)
        return 0
    header = {"status": "status", "pipeline": "pipeline", "done": "stages done", "updated": "updated",
              "dir": "run directory", "note": ""}
    shown = [header] + [{**r, "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["updated"]))}
                        for r in rows]
    keys = ["status", "pipeline", "done", "updated", "dir"]
    widths = {k: max(len(str(r[k])) for r in shown) for k in keys}
    for r in shown:
        line = "  ".join(str(r[k]).ljust(widths[k]) for k in keys)
        print((line + "  " + r["note"]).rstrip(), file=out)
    return 0


def resume_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of ``alignkit resume RUN_DIR [key=value ...]``: the run's own
    (``.hydra/overrides.yaml``), its data files by their absolute paths (summary.json's
    ``data_files``, so any folder works), the extra ones, and ``hydra.run.dir=RUN_DIR``."""
    import yaml

    usage = ("usage: alignkit resume RUN_DIR [key=value ...]: rerun a run in its own directory; "
             "finished stages are skipped, an interrupted one continues from its last checkpoint")
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        raise SystemExit(0)
    if not argv or argv[0].startswith("-"):
        raise SystemExit(usage)
    run_dir = Path(argv[0]).resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise SystemExit(f"alignkit resume: error: {run_dir} is not an alignkit run directory (no {saved.name} "
                         f"in {saved.parent}); `alignkit runs` lists them")
    overrides = [str(o) for o in (yaml.safe_load(saved.read_text(encoding="utf-8")) or [])]
    try:
        summary = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        summary = {}
    files = summary.get("data_files") or {}
    out = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+")
        if "=" in item and key in files:
            item = item.split("=", 1)[0] + "=" + files[key]["path"]
        out.append(item)
    return [*out, *argv[1:], f"hydra.run.dir={run_dir}"]
