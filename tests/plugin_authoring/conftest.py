"""Fresh virtual environments with alignkit installed from a built wheel, as a user installs it.

Each venv has no pip of its own (the test runner's pip installs into it with ``--python``) and
sees the test runner's site-packages *after* its own through a ``.pth`` line, so torch and the
other dependencies are not reinstalled while ``alignkit`` itself and every plugin come from the
venv (its own entry points win: they are first on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "alignkit-kto"
_SOURCES = ("pyproject.toml", "README.md", "core", "plugins", "conf")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", ".pytest_cache")


def copy_project(source: Path, target: Path, names: tuple[str, ...] | None = None) -> Path:
    """Copy a source tree (no build leftovers) so building it never writes into the checkout."""
    if names is None:
        shutil.copytree(source, target, ignore=_IGNORE)
        return target
    target.mkdir(parents=True)
    for name in names:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=_IGNORE)
        else:
            shutil.copy2(path, target / name)
    return target


@dataclass
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}
        env.update(PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(self.path),
                   HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false", **extra)
        return env

    def pip_install(self, *args: str) -> None:
        run([sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q", "--no-deps",
             "--no-build-isolation", "--no-index", *args], env=self.env())

    def run(self, *args: str, cwd: Path | None = None, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return run(list(args), env=self.env(**env), cwd=cwd, check=check)


def run(args: list, *, env: dict, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def listing_rows(out: str) -> list[list[str]]:
    """``[kind, name, package]`` of each component row of ``alignkit plugins``; its column header,
    section headings (``# ...`` or ``...:``), blank lines and ``not loaded:`` lines are no rows."""
    rows = []
    for line in out.splitlines():
        fields, text = line.split(), line.strip()
        if len(fields) < 3 or text.startswith("#") or text.endswith(":") or text.startswith("not loaded:") \
                or fields[:3] == ["kind", "name", "package"]:
            continue
        rows.append(fields[:3])
    return rows


@pytest.fixture(scope="session")
def plugin_rows():
    """``plugin_rows(out)``: see ``listing_rows``."""
    return listing_rows


@pytest.fixture(scope="session")
def alignkit_wheel(tmp_path_factory) -> Path:
    """alignkit built once per session from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("alignkit-wheel")
    source = copy_project(ROOT, tmp / "src", _SOURCES)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
         str(source)], env=dict(os.environ))
    return next((tmp / "dist").glob("alignkit-*.whl"))


@pytest.fixture(scope="session")
def make_venv(alignkit_wheel):
    """``make_venv(path)``: a fresh venv with the alignkit wheel installed."""

    def _make(path: Path) -> Venv:
        venv.create(path, with_pip=False, symlinks=True)
        env = Venv(path)
        purelib = run([env.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      env=env.env()).stdout.strip()
        Path(purelib, "_alignkit_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env.pip_install(str(alignkit_wheel))
        return env

    return _make


@pytest.fixture(scope="session")
def project_copy():
    """``project_copy(source, target)``: see ``copy_project``."""
    return copy_project


@pytest.fixture(scope="session")
def example_dir() -> Path:
    return EXAMPLE


@pytest.fixture(scope="session")
def install_example(make_venv, tmp_path_factory):
    """``install_example(folder)``: a copy of the example package ``folder`` pip-installed into a
    fresh venv next to alignkit, as a user would; returns (venv, the copy)."""

    def _install(folder: Path) -> tuple[Venv, Path]:
        tmp = tmp_path_factory.mktemp(folder.name)
        env = make_venv(tmp / "venv")
        source = copy_project(folder, tmp / folder.name)
        env.pip_install(str(source))
        return env, source

    return _install
