"""A Hydra multirun's record: ``<sweep dir>/sweep.json`` lists every job, its run directory,
overrides and status, so one failed job is visible without ending the sweep.

    {"status": "running|completed|failed|waiting", "command": [...],
     "jobs": [{"num": 0, "dir": "0", "overrides": [...], "status": "completed"},
              {"num": 1, "dir": "1", "overrides": [...], "status": "failed", "error": "..."}]}

Each job's own ``summary.json`` says the same (status "failed" and its "error"), which is what
``alignkit report`` reads. Jobs run one after the other in this process (Hydra's basic launcher).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from alignkit.core.rundir import atomic_write_json

SWEEP = "sweep.json"
EXIT_FAILED = 2  # like a failed single run


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    file = Path(sweep_dir) / SWEEP
    if file.exists():
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # written atomically, so only a hand edit gets here: start over
            pass
    return {"status": "running", "command": [], "jobs": []}


def record_job(sweep_dir: Path, command: Sequence[str], num: int, run_dir: Path, overrides: Sequence[str],
               status: str, error: str | None = None) -> dict[str, Any]:
    """Add or replace job ``num``'s entry. A sweep folder reused by another command starts a new list."""
    sweep_dir = Path(sweep_dir).resolve()
    sweep = read_sweep(sweep_dir)
    if sweep.get("command") != list(command):
        sweep = {"status": "running", "command": list(command), "jobs": []}
    try:
        shown = str(Path(run_dir).resolve().relative_to(sweep_dir))
    except ValueError:
        shown = str(Path(run_dir).resolve())
    job: dict[str, Any] = {"num": num, "dir": shown, "overrides": list(overrides), "status": status}
    if error:
        job["error"] = error
    jobs = [j for j in sweep["jobs"] if j.get("num") != num] + [job]
    sweep["jobs"] = sorted(jobs, key=lambda j: j.get("num", 0))
    sweep["status"] = "running"
    atomic_write_json(sweep_dir / SWEEP, sweep)
    return sweep


def finish_sweep(sweep_dir: Path) -> tuple[dict[str, Any], int]:
    """Write the sweep's final status; return it with the exit status the command should end with:
    0 when every job completed, 2 when one failed, 75 when none failed but one waits for labels."""
    from alignkit.core.errors import WaitingForFeedback

    sweep = read_sweep(sweep_dir)
    statuses = [j.get("status") for j in sweep["jobs"]]
    if any(s not in ("completed", "waiting") for s in statuses):
        sweep["status"], code = "failed", EXIT_FAILED
    elif "waiting" in statuses:
        sweep["status"], code = "waiting", WaitingForFeedback.EXIT_WAITING
    else:
        sweep["status"], code = "completed", 0
    atomic_write_json(Path(sweep_dir) / SWEEP, sweep)
    return sweep, code


def describe(sweep_dir: Path, sweep: dict[str, Any]) -> str:
    """The lines the command prints at the end of a sweep."""
    jobs = sweep["jobs"]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    lines = [f"alignkit: sweep directory: {sweep_dir} ({len(jobs)} jobs: "
             + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"]
    common = set.intersection(*(set(j["overrides"]) for j in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        if job["status"] != "completed":
            swept = " ".join(o for o in job["overrides"] if o not in common)
            error = " ".join(str(job.get("error") or "").split())
            reason = f": {error[:200]}" + ("..." if len(error) > 200 else "") if error else ""
            lines.append(f"  job {job['num']} ({swept}) {job['status']}{reason}")
    lines.append(f"report with: alignkit report {sweep_dir}")
    return "\n".join(lines)
