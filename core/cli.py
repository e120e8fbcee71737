"""The ``alignkit`` command: loads plugins, hands their config roots to Hydra, runs a pipeline.

    alignkit [hydra overrides...]     compose conf/ and run the pipeline
    alignkit -m key=a,b               Hydra multirun sweep
    alignkit ... --dry-run            compose, check every stage (core/preflight.py), print the plan; train nothing
    alignkit --help                   commands and config group options (core/usage.py); Hydra's: --hydra-help
    alignkit plugins                  list every registered component
    alignkit runs [DIR]               run directories under DIR (runs/) with their true status
    alignkit resume RUN_DIR           rerun a run with its saved overrides, in its own directory
    alignkit plugin new NAME          write a skeleton package for a new plugin (core/scaffold.py)
    alignkit <command> ...            any plugin's command (the ``alignkit_commands`` hook, like those
                                      above), e.g. ``alignkit label serve`` from the human-feedback plugin
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Sequence

from alignkit.core import distributed, launcher
from alignkit.core.commands import LEGACY_WARNING
from alignkit.core.errors import AlignkitError, WaitingForFeedback
from alignkit.core.registry import Registry
from alignkit.core.types import CommandEntry

CONFIG_MODULE = "alignkit.conf"
CONFIG_NAME = "config"

_registry: Registry | None = None
_user_args: list[str] = []
_dry_run = False  # --dry-run: check and print the plan instead of running it
_sweep_dirs: list[Path] = []  # set by the jobs of a multirun: main() reports on the sweep at the end
log = logging.getLogger(__name__)


class _JobExit(SystemExit):
    """The end of a failed job, with the message printed for it (a sweep records it)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


def registry() -> Registry:
    """This process's registry, built once: the CLI resolves commands and runs pipelines with it,
    and a command (``alignkit evaluate``, ``alignkit data``) takes it rather than building another."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def list_plugins(reg: Registry, out=sys.stdout) -> None:
    """Every registered component, one row ``kind name package description`` each, under a ``#``
    heading per registry saying what it holds (training algorithms apart from stages)."""
    from alignkit.core.registry import HOLDS

    rows = [(kind, r.entry.name, r.package, r.entry.description) for kind, r in reg.all()]
    widths = [max(len(str(row[i])) for row in rows + [("kind", "name", "package", "")]) for i in range(3)]
    header = ("kind", "name", "package", "description")
    kind = None
    for row in [header, *sorted(rows)]:
        if row is not header and row[0] != kind:
            kind = row[0]
            print(f"\n# {HOLDS.get(kind, kind)}", file=out)
        print("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row[:3])) + "  " + row[3], file=out)
    from alignkit.core.manager import describe_failure, plugin_failures

    for failure in plugin_failures(reg.pm):
        print(f"not loaded: {describe_failure(failure)}", file=out)


def model_options() -> set[str]:
    from importlib.resources import files

    return {p.name[:-5] for p in files(CONFIG_MODULE).joinpath("model").iterdir() if p.name.endswith(".yaml")}


def rewrite_overrides(args: Sequence[str], searchpath: Sequence[str]) -> list[str]:
    """``model=<hub id|dir|file>`` becomes ``model=path model.name_or_path=...``; plugin roots join the search path."""
    out: list[str] = []
    known = model_options()
    for arg in args:
        if arg.startswith("model=") and "," not in arg:
            value = arg.split("=", 1)[1]
            if value not in known:
                out += ["model=path", f"model.name_or_path={value}"]
                continue
        out.append(arg)
    if searchpath:
        user = [a for a in out if a.startswith("hydra.searchpath=")]
        if user:
            raise SystemExit("alignkit: set plugin config roots through the alignkit_config_searchpath hook, "
                             "not hydra.searchpath")
        out.append("hydra.searchpath=[" + ",".join(searchpath) + "]")
    return out


def _task(cfg) -> None:  # the @hydra.main function, wrapped in main()
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from alignkit.core.log_routing import keep_checkpoint_logs_off_console

    keep_checkpoint_logs_off_console()  # Hydra has just set up this job's console and file logging
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN and not launcher.inside_launch():
        _sweep_job(cfg, run_dir, hydra_cfg)
    else:
        _run_job(cfg, run_dir)


def _sweep_job(cfg, run_dir: Path, hydra_cfg) -> None:
    """One job of ``alignkit -m``: a failure is recorded (the job's summary.json: status "failed" and
    its "error"; the sweep's sweep.json) and the sweep goes on to the next job; main() exits non-zero
    at the end. Ctrl-C still ends the sweep."""
    import traceback

    from alignkit.core import sweep
    from alignkit.core.rundir import RunDir

    sweep_dir = Path(str(hydra_cfg.sweep.dir)).resolve()
    if sweep_dir not in _sweep_dirs:
        _sweep_dirs.append(sweep_dir)
    num, overrides = int(hydra_cfg.job.num), [str(o) for o in hydra_cfg.overrides.task]
    sweep.record_job(sweep_dir, _user_args, num, run_dir, overrides, "running")
    status, error = "completed", None
    try:
        _run_job(cfg, run_dir)
    except SystemExit as exc:
        if exc.code == WaitingForFeedback.EXIT_WAITING:
            status = "waiting"
        elif exc.code not in (0, None):
            status, error = "failed", getattr(exc, "message", None) or f"exit status {exc.code}"
    except Exception as exc:  # what a single run would end with as a traceback
        log.exception("job %d (%s) failed", num, " ".join(overrides))
        status, error = "failed", "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if status == "failed" and distributed.is_main_process() and not _dry_run:
        rd = RunDir(run_dir, pipeline=str(cfg.get("pipeline", {}).get("name") or ""), writer=True)
        if rd.summary.get("status") != "failed":  # failed before the pipeline wrote its summary
            rd.finish("failed", error)
        error = rd.summary.get("error") or error
    sweep.record_job(sweep_dir, _user_args, num, run_dir, overrides, status, error)


def _dry_run_job(cfg, run_dir: Path) -> None:
    """``--dry-run``: check the composed run as its first stage would (core/preflight.py), print the
    plan and stop: no stage folder, no model, no launch."""
    from alignkit.core.preflight import preflight

    try:
        registry().hook.alignkit_configure.call_historic(kwargs={"cfg": cfg})
        plan = preflight(cfg, registry())
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        raise _JobExit(2, str(exc)) from None
    print(plan.describe())
    print(f"alignkit: dry run: the configuration is valid; nothing was trained (Hydra wrote only "
          f"{run_dir / '.hydra'})")


def _run_job(cfg, run_dir: Path) -> None:
    """Run one job in ``run_dir`` (under ``accelerate launch`` when asked); errors end it with
    exit status 2, a stage waiting for labels with 75."""
    if _dry_run:
        return _dry_run_job(cfg, run_dir)
    try:  # re-run this job under `accelerate launch`, in the same run directory
        code = launcher.relaunch(cfg, run_dir) if launcher.launch_requested(cfg) else None
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        raise _JobExit(2, str(exc)) from None
    if code:
        raise SystemExit(code)
    if code == 0:  # the launched processes ran the pipeline
        return

    from alignkit.core.pipeline import run_pipeline

    try:
        run_pipeline(cfg, run_dir, registry())
    except WaitingForFeedback as exc:
        again = [a for a in _user_args if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
        if _sweep_dirs:  # a sweep's command line names every job: resume this one
            again = ["resume", str(run_dir)]
        print(f"alignkit: waiting: {exc}\nrun directory: {run_dir}\nresume with: "
              + shlex.join(["alignkit", *again]))
        raise SystemExit(exc.EXIT_WAITING) from None
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}\nrun directory: {run_dir}", file=sys.stderr)
        raise _JobExit(2, str(exc)) from None
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"alignkit: error: {type(exc).__name__}: {exc}\nrun directory: {run_dir}", file=sys.stderr)
        raise _JobExit(2, f"{type(exc).__name__}: {exc}") from None
    if distributed.is_main_process():
        print(f"alignkit: run directory: {run_dir}")


def subcommand(name: str) -> CommandEntry | None:
    """The command ``alignkit <name> ...`` runs (``alignkit_commands`` hook), or None when ``name`` is
    an override or a flag. A bare word no plugin offers is an error listing the commands."""
    from alignkit.core.commands import command_table, is_command_word, unknown_command

    if not is_command_word(name):
        return None
    table = command_table(registry())
    if name not in table:
        raise UnknownCommand(unknown_command(name, table))
    return table[name].entry


class UnknownCommand(AlignkitError):
    """``alignkit <word>`` where no plugin offers the command ``word``."""


def main(argv: Sequence[str] | None = None) -> None:
    import hydra

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--plugins"]:  # the older spelling of `alignkit plugins`
        args[0] = "plugins"
    # Python hides DeprecationWarning outside __main__; a plugin author should see this one
    warnings.filterwarnings("default", category=DeprecationWarning, message=LEGACY_WARNING)
    try:  # alignkit <command> ...: plugins, runs, resume, evaluate, label, a plugin's own (alignkit_commands)
        command = subcommand(args[0]) if args else None
        if command is not None:
            raise SystemExit(command.run(args[1:]))
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if "--help" in args or "-h" in args:  # alignkit's own help; Hydra's is --hydra-help
        from alignkit.core.usage import print_usage

        raise SystemExit(print_usage(registry()))
    global _dry_run
    _dry_run = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    _user_args[:] = args
    logging.getLogger("alignkit").setLevel(logging.INFO)
    try:
        reg = registry()
        searchpath = reg.config_searchpath()
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], *rewrite_overrides(args, searchpath), *launcher.launched_process_overrides()]
    from alignkit.core.rundir import register_resolvers

    register_resolvers()  # ${alignkit_run_name:...} in hydra.run.dir / hydra.sweep.dir
    from alignkit.core.config_defaults import register_config_defaults

    register_config_defaults(reg)  # the option files' /dataclass_defaults/... (core/config_defaults.py)
    app = hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)(_task)
    app()
    if _sweep_dirs and distributed.is_main_process():  # the end of a multirun: the folder to report on
        from alignkit.core import sweep

        record, code = sweep.finish_sweep(_sweep_dirs[-1])
        print(sweep.describe(_sweep_dirs[-1], record))
        if code:
            raise SystemExit(code)


def console_main() -> None:
    """The ``alignkit`` console script: ``main``, then an exit that skips the interpreter's teardown.

    Freeing torch's and transformers' module state at exit took ~1.5 s of a 20 s smoke run; the
    atexit handlers (loggers, temporary folders) still run, and the streams are flushed first.
    In-process callers (tests) use ``main``, which returns."""
    import atexit

    main()
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    console_main()
