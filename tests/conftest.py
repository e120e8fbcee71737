import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["alignkit.core.testing"]

# `python -m pytest -m "not slow"` is the fast loop: a test that runs a pipeline through the
# `alignkit` command (a subprocess) must be marked slow. The guard below fails one that is not,
# before the process starts.
_QUICK_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c"}
_running: list[pytest.Item] = []


class UnmarkedSlowTest(RuntimeError):
    """A test not marked ``slow`` started an ``alignkit`` run."""


def runs_a_pipeline(args) -> bool:
    """Whether a command line is an ``alignkit`` run (Hydra overrides, a multirun, ``resume``)
    rather than a quick subcommand (``plugins``, ``label ...``, ``report ...``) or ``--help``."""
    argv = [str(a) for a in ([args] if isinstance(args, (str, bytes, os.PathLike)) else args)]
    if len(argv) == 1 and " " in argv[0]:
        argv = argv[0].split()  # shell=True
    if argv and Path(argv[0]).name == "alignkit":
        rest = argv[1:]
    elif "alignkit.core.cli" in argv[1:] and argv[argv.index("alignkit.core.cli") - 1] == "-m":
        rest = argv[argv.index("alignkit.core.cli") + 1:]
    else:
        return False
    if _QUICK_FLAGS.intersection(rest):
        return False
    return not rest or rest[0] == "resume" or rest[0].startswith("-") or "=" in rest[0]


def _guard(event: str, args: tuple) -> None:
    if event != "subprocess.Popen" or not _running:
        return
    item = _running[-1]
    if item.get_closest_marker("slow") is None and runs_a_pipeline(args[1]):
        raise UnmarkedSlowTest(f"{item.nodeid} runs `alignkit` ({' '.join(map(str, args[1]))[:200]}): "
                               "mark it @pytest.mark.slow (or the module: pytestmark = pytest.mark.slow) "
                               "so that `python -m pytest -m \"not slow\"` stays fast")


sys.addaudithook(_guard)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


@pytest.fixture
def alignkit_run_guard():
    """``runs_a_pipeline`` and the error the guard raises, for the tests of the guard."""
    return runs_a_pipeline, UnmarkedSlowTest
