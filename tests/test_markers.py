"""`python -m pytest -m "not slow"` is the fast loop: every integration module is marked slow, and
a test that runs a pipeline through the `alignkit` command fails unless it is marked slow (the
guard in tests/conftest.py stops the process before it starts)."""

import ast
import subprocess
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"
NOWHERE = "/nonexistent/bin/alignkit"  # never starts: the guard or FileNotFoundError comes first


def _module_marks(path: Path) -> str:
    """The source of the module's top-level ``pytestmark = ...``, or ''."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            return ast.unparse(node.value)
    return ""


@pytest.mark.parametrize("path", sorted(INTEGRATION.glob("test_*.py")), ids=lambda p: p.name)
def test_every_integration_module_is_marked_slow(path):
    assert "pytest.mark.slow" in _module_marks(path), \
        f"{path}: add `pytestmark = pytest.mark.slow` after the imports"


def test_the_integration_folder_has_modules():
    assert len(list(INTEGRATION.glob("test_*.py"))) >= 5


@pytest.mark.parametrize(("argv", "expected"), [
    (["/venv/bin/alignkit"], True),  # the default pipeline
    (["/venv/bin/alignkit", "pipeline=dpo", "model=tiny-random"], True),
    (["alignkit", "-m", "pipeline=dpo", "optimizer.beta=0.1,0.5"], True),  # a multirun
    (["/usr/bin/python3", "-m", "alignkit.core.cli", "pipeline=sft"], True),
    (["alignkit", "resume", "runs/x"], True),  # reruns a pipeline
    ("alignkit pipeline=sft trainer.max_steps=1", True),  # shell=True
    (["alignkit", "plugins"], False),
    (["/usr/bin/python3", "-m", "alignkit.core.cli", "label", "serve", "--db", "x.db"], False),
    (["alignkit", "report", "runs/a", "runs/b"], False),
    (["alignkit", "pipeline=dpo", "--cfg", "job"], False),  # prints the config, runs nothing
    (["/usr/bin/python3", "-m", "alignkit.core.cli", "evaluate", "--help"], False),
    (["/usr/bin/python3", "-c", "import alignkit.core.cli"], False),
    (["/usr/bin/python3", "-m", "pip", "install", "/src/alignkit"], False),
    (["/usr/bin/python3", "-m", "pytest", "-q"], False),
])
def test_what_counts_as_an_alignkit_run(alignkit_run_guard, argv, expected):
    runs_a_pipeline, _ = alignkit_run_guard
    assert runs_a_pipeline(argv) is expected


def test_a_test_not_marked_slow_cannot_start_an_alignkit_run(alignkit_run_guard):
    _, unmarked = alignkit_run_guard
    with pytest.raises(unmarked, match=r"test_markers\.py::test_a_test_not_marked_slow.*mark it @pytest\.mark\.slow"):
        subprocess.run([NOWHERE, "pipeline=dpo", "model=tiny-random"])
    with pytest.raises(FileNotFoundError):  # a quick subcommand passes the guard
        subprocess.run([NOWHERE, "plugins"])


@pytest.mark.slow  # it starts nothing: the marker is what it checks
def test_a_test_marked_slow_may_start_an_alignkit_run():
    with pytest.raises(FileNotFoundError):  # the guard let it through to the (missing) executable
        subprocess.run([NOWHERE, "pipeline=dpo", "model=tiny-random"])
