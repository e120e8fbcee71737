"""The folder mapping (core/ -> alignkit.core, ...) works from a built wheel in a fresh venv."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and installs it into a fresh venv

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(ROOT)], check=True)
    wheel = next((tmp / "dist").glob("alignkit-*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)  # this interpreter's pip installs into it (no ensurepip)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    # Dependencies come from this interpreter's site-packages, after the fresh venv's own.
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    return python, env, wheel


def test_wheel_contains_the_mapped_packages_and_configs(wheel_venv):
    import zipfile

    _, _, wheel = wheel_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "alignkit/core/hookspecs.py" in names
    assert "alignkit/plugins/sft/plugin.py" in names
    assert "alignkit/conf/config.yaml" in names
    assert "alignkit/conf/pipeline/dpo.yaml" in names
    assert any(n.startswith("alignkit/plugins/data/demo/") and n.endswith(".jsonl") for n in names)
    assert not any(n.startswith(("core/", "plugins/", "conf/")) for n in names), "no top-level core/plugins"


def test_installed_wheel_imports_lists_plugins_and_composes(wheel_venv):
    python, env, _ = wheel_venv
    code = (
        "import alignkit.core, alignkit.plugins, sys;"
        "print(alignkit.core.__file__);"
        "from alignkit.core.testing import compose;"
        "cfg = compose(['pipeline=dpo']);"
        "print(cfg.optimizer.name)"
    )
    out = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    location, optimizer = out.split()
    assert str(python.parents[1]) in location, "imported from the fresh venv, not the source tree"
    assert optimizer == "dpo"
    listing = subprocess.run([str(python.parent / "alignkit"), "plugins"], env=env, capture_output=True,
                             text=True, check=True).stdout
    assert "optimizer" in listing and "sft" in listing and "alignkit" in listing
