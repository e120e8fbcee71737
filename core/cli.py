"""The ``alignkit`` command: loads plugins, hands their config roots to Hydra, runs a pipeline.

    alignkit [hydra overrides...]     compose conf/ and run the pipeline
    alignkit -m key=a,b               Hydra multirun sweep
    alignkit plugins                  list every registered component
    alignkit plugin new NAME          write a skeleton package for a new plugin (core/scaffold.py)
    alignkit <command> ...            a plugin's command (entry-point group ``alignkit.commands``),
                                      e.g. ``alignkit label serve`` from the human-feedback plugin
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

from alignkit.core import distributed, launcher
from alignkit.core.errors import AlignkitError, WaitingForFeedback
from alignkit.core.registry import Registry

CONFIG_MODULE = "alignkit.conf"
CONFIG_NAME = "config"
COMMANDS_GROUP = "alignkit.commands"

_registry: Registry | None = None
_user_args: list[str] = []


def registry() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def list_plugins(reg: Registry, out=sys.stdout) -> None:
    rows = [(kind, r.entry.name, r.package, r.entry.description) for kind, r in reg.all()]
    widths = [max(len(str(row[i])) for row in rows + [("kind", "name", "package", "")]) for i in range(3)]
    header = ("kind", "name", "package", "description")
    for row in [header, *sorted(rows)]:
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

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:  # re-run this job under `accelerate launch`, in the same run directory
        code = launcher.relaunch(cfg, run_dir) if launcher.launch_requested(cfg) else None
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if code:
        raise SystemExit(code)
    if code == 0:  # the launched processes ran the pipeline
        return

    from alignkit.core.pipeline import run_pipeline

    try:
        run_pipeline(cfg, run_dir, registry())
    except WaitingForFeedback as exc:
        again = [a for a in _user_args if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
        print(f"alignkit: waiting: {exc}\nrun directory: {run_dir}\nresume with: "
              + shlex.join(["alignkit", *again]))
        raise SystemExit(exc.EXIT_WAITING) from None
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}\nrun directory: {run_dir}", file=sys.stderr)
        raise SystemExit(2) from None
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"alignkit: error: {type(exc).__name__}: {exc}\nrun directory: {run_dir}", file=sys.stderr)
        raise SystemExit(2) from None
    if distributed.is_main_process():
        print(f"alignkit: run directory: {run_dir}")


def subcommand(name: str):
    """The function behind ``alignkit <name> ...`` if a plugin declares one, else None."""
    if not name or "=" in name or name.startswith("-"):
        return None
    from importlib.metadata import entry_points

    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def main(argv: Sequence[str] | None = None) -> None:
    import hydra

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["plugin"]:  # alignkit plugin new NAME: write a plugin skeleton
        from alignkit.core.scaffold import main as plugin_command

        raise SystemExit(plugin_command(args[1:]))
    command = subcommand(args[0]) if args else None
    if command is not None:
        raise SystemExit(command(args[1:]))
    _user_args[:] = args
    logging.getLogger("alignkit").setLevel(logging.INFO)
    try:
        reg = registry()
        if args and args[0] in ("plugins", "--plugins"):
            list_plugins(reg)
            return
        searchpath = reg.config_searchpath()
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], *rewrite_overrides(args, searchpath), *launcher.launched_process_overrides()]
    app = hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)(_task)
    app()


if __name__ == "__main__":
    main()
