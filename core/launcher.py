"""``launcher.num_processes=N`` / ``launcher.config=fsdp``: re-run the same command under ``accelerate launch``.

The ``alignkit`` command composes its config first (so the run directory is fixed once),
then, when a launch is asked for and this process was not itself launched, starts

    python -m accelerate.commands.launch --config_file <conf/accelerate/NAME.yaml> [--num_processes N ...]
        -m alignkit.core.cli <the same overrides> hydra.run.dir=<the composed run directory>

and waits for it. Each launched process composes the same config, finds itself inside a
launch (``ALIGNKIT_LAUNCHED`` or the ``RANK``/``WORLD_SIZE`` variables torchrun sets) and
runs the pipeline; the run directory is written by the main process only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

from alignkit.core.errors import ConfigError

LAUNCHED_ENV = "ALIGNKIT_LAUNCHED"
CONFIG_PACKAGE = "alignkit.conf"
CONFIG_FOLDER = "accelerate"

# Hydra overrides that the launched processes must not repeat: the CLI adds the plugin search
# path itself, the run directory is passed resolved, and each launched process runs one job.
_DROP_HYDRA = ("hydra.searchpath=", "hydra.run.dir=", "hydra.sweep.", "hydra.mode=", "hydra.job.num=",
               "hydra.job.id=")


def inside_launch() -> bool:
    """True in a process started by ``accelerate launch`` / torchrun (or by this module)."""
    return os.environ.get(LAUNCHED_ENV) == "1" or "WORLD_SIZE" in os.environ or "LOCAL_RANK" in os.environ


def launch_requested(cfg: Any) -> bool:
    """True when the config asks for a launch and this process is not already inside one."""
    if cfg is not None and cfg.get("accelerate") is not None:  # `+accelerate=fsdp` composes, then does nothing
        raise ConfigError("conf/accelerate/ holds accelerate config files, not Hydra options: "
                          "choose one with launcher.config=<name> (see docs/scaling.md)")
    node = cfg.get("launcher") if cfg is not None else None
    if not node or inside_launch():
        return False
    return (int(node.get("num_processes") or 1) > 1 or node.get("config") is not None
            or int(node.get("num_machines") or 1) > 1)


def config_names() -> list[str]:
    folder = files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _has_gpu() -> bool:
    """A cheap look for GPUs (this process does not import torch). Both configs start the same
    torchrun launcher; each launched process then picks CUDA when torch sees it."""
    return bool(shutil.which("nvidia-smi")) or os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/kfd")


def resolve_config(name: str | None) -> Path:
    """A name from conf/accelerate/ or a path; null means ``ddp`` with GPUs, ``cpu`` without."""
    if name is None:
        name = "ddp" if _has_gpu() else "cpu"
    name = str(name)
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml", ".json") or os.sep in name:
        if not path.is_file():
            raise ConfigError(f"launcher.config: no such accelerate config file {path}")
        return path.resolve()
    shipped = files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER, f"{name}.yaml")
    if not shipped.is_file():
        raise ConfigError(f"launcher.config '{name}' is not a shipped accelerate config "
                          f"({', '.join(config_names())}) nor a path to one")
    return Path(str(shipped))


def launch_command(cfg: Any, overrides: Sequence[str], run_dir: Path) -> list[str]:
    """The ``accelerate launch`` command line that re-runs this alignkit command."""
    node = cfg.launcher
    num_processes = node.get("num_processes")
    num_machines = int(node.get("num_machines") or 1)
    machine_rank = int(node.get("machine_rank") or 0)
    config = resolve_config(node.get("config"))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if num_processes is not None:
        cmd += ["--num_processes", str(int(num_processes))]
    if num_machines > 1:
        if node.get("main_process_ip") is None:
            raise ConfigError("launcher.num_machines > 1 needs launcher.main_process_ip (the address of machine 0)")
        cmd += ["--num_machines", str(num_machines)]
    if num_machines > 1 or machine_rank > 0:
        cmd += ["--machine_rank", str(machine_rank)]
    if node.get("main_process_ip") is not None:
        cmd += ["--main_process_ip", str(node.main_process_ip)]
    if node.get("main_process_port") is not None:
        cmd += ["--main_process_port", str(int(node.main_process_port))]
    cmd += [str(a) for a in (node.get("extra_args") or [])]
    return [*cmd, "-m", "alignkit.core.cli", *overrides, f"hydra.run.dir={run_dir}"]


def child_overrides(task_overrides: Sequence[str], hydra_overrides: Sequence[str]) -> list[str]:
    """This job's overrides (one job of a sweep included), without what the launched CLI adds."""
    kept = [o for o in hydra_overrides if not o.startswith(_DROP_HYDRA)]
    return [*task_overrides, *kept]


def _machines(cfg: Any) -> int:
    """Machines in the launch: launcher.num_machines, else the accelerate config's."""
    import yaml

    if int(cfg.launcher.get("num_machines") or 1) > 1:
        return int(cfg.launcher.num_machines)
    data = yaml.safe_load(resolve_config(cfg.launcher.get("config")).read_text()) or {}
    return int(data.get("num_machines") or 1)


def relaunch(cfg: Any, run_dir: Path) -> int:
    """Run this job under ``accelerate launch``; the launched processes' exit status."""
    from hydra.core.hydra_config import HydraConfig

    overrides = HydraConfig.get().overrides
    if _machines(cfg) > 1 and not any(o.startswith("hydra.run.dir=") for o in overrides.hydra):
        raise ConfigError("a multi-node run needs hydra.run.dir=<a folder every machine shares>: the default "
                          "name holds the start time, which differs between machines")
    cmd = launch_command(cfg, child_overrides(list(overrides.task), list(overrides.hydra)), run_dir)
    env = dict(os.environ, **{LAUNCHED_ENV: "1"})
    print("alignkit: running under accelerate: " + shlex.join(["python", *cmd[1:]]), file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env).returncode


def launched_process_overrides() -> list[str]:
    """Extra Hydra overrides for a launched process other than the main one: it neither writes
    ``.hydra/`` nor opens the run's log file (the main process does both)."""
    from alignkit.core import distributed

    if inside_launch() and not distributed.is_main_process():
        return ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
    return []
