"""``alignkit plugin new NAME [--kind KIND]`` writes a complete, fully rendered package.

Each kind's skeleton passes its own tests (alignkit's contract suite for that kind) with
pytest's deprecations as errors, so it keeps working on pytest 10. That the optimizer package
installs into a fresh venv with pip and is discovered is checked by running the tutorial, as a
user would: ``test_writing_plugins_doc.py`` (docs/plugins/writing-plugins.md, step 7).
"""

import os
import re
import subprocess
import sys

import pytest

from alignkit.core import ConfigError
from alignkit.core.scaffold import KINDS, Names, main, new_plugin


def test_names_are_spelled_for_each_place():
    names = Names.of("my-opt")
    assert (names.name, names.package, names.dist, names.class_name) == ("my_opt", "alignkit_my_opt",
                                                                         "alignkit-my-opt", "MyOpt")
    for bad in ("My Opt", "1opt", "opt!", ""):
        with pytest.raises(ConfigError, match="lower-case letters"):
            Names.of(bad)


def test_the_skeleton_is_complete_and_fully_rendered(tmp_path):
    target = new_plugin("my_opt", tmp_path, check_names=False)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["README.md", "alignkit_my_opt/__init__.py", "alignkit_my_opt/conf/__init__.py",
                     "alignkit_my_opt/conf/optimizer/my_opt.yaml", "alignkit_my_opt/optimizer.py",
                     "alignkit_my_opt/plugin.py", "conftest.py", "pyproject.toml", "tests/test_my_opt.py"]
    for path in target.rglob("*"):
        if path.is_file():
            assert not re.search(r"\{\{|\}\}", path.read_text()), f"{path} has an unfilled template variable"
    assert 'my_opt = "alignkit_my_opt.plugin"' in (target / "pyproject.toml").read_text()
    assert "Run:" in (target / "alignkit_my_opt/conf/optimizer/my_opt.yaml").read_text()
    with pytest.raises(ConfigError, match="already exists"):
        new_plugin("my_opt", tmp_path, check_names=False)


def test_a_taken_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'dpo' is taken by the optimizer 'dpo' from package 'alignkit'"):
        new_plugin("dpo", tmp_path)
    assert not any(tmp_path.iterdir())


def test_an_unknown_kind_is_refused_naming_the_kinds(tmp_path):
    with pytest.raises(ConfigError, match="choose one of optimizer, feedback, data, preference_model, generator"):
        new_plugin("mine", tmp_path, kind="reward", check_names=False)
    assert not any(tmp_path.iterdir())


def _installed(target, names):
    """What ``pip install -e .`` leaves for importlib.metadata: a dist-info with the entry point,
    on a folder that goes on PYTHONPATH with the package (no build, no venv: fast)."""
    site = target / "site"
    info = site / f"{names.package}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {names.dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[alignkit]\n{names.name} = {names.package}.plugin\n")
    return site


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.slow  # runs each skeleton's pytest in a subprocess
def test_each_kind_passes_its_own_tests_without_deprecated_pytest_patterns(kind, tmp_path):
    names = Names.of(f"my_{kind}")
    target = new_plugin(names.name, tmp_path, kind=kind, check_names=False)
    for path in target.rglob("*"):
        if path.is_file():
            assert not re.search(r"\{\{|\}\}", path.read_text()), f"{path} has an unfilled template variable"
    assert (target / names.package / f"{KINDS[kind].module}.py").is_file()
    assert (target / names.package / "conf" / KINDS[kind].group / f"{names.name}.yaml").is_file()
    pyproject = (target / "pyproject.toml").read_text()
    assert "DeprecationWarning" not in pyproject, "the skeleton must not hide pytest's deprecations"
    assert 'test = ["pytest>=8"]' in pyproject
    assert f"from alignkit.core.testing import {KINDS[kind].contract}" in (target / f"tests/test_{names.name}.py").read_text()
    site = _installed(target, names)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTHONPATH")}
    env.update(PYTHONPATH=f"{target}{os.pathsep}{site}", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # PytestRemovedIn10Warning: what pytest 10 turns into errors (class-scoped instance-method fixtures, ...)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-W", "error::pytest.PytestRemovedIn10Warning", "-W", "error::pytest.PytestDeprecationWarning"],
                          cwd=target, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def test_the_command_says_to_run_python_m_pytest(tmp_path, capsys):
    assert main(["new", "my_judge", "--kind", "feedback", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "the feedback provider 'my_judge' in package alignkit-my-judge" in printed
    assert "pip install -e '.[test]'" in printed and "python -m pytest" in printed
    assert (tmp_path / "alignkit-my-judge" / "alignkit_my_judge" / "provider.py").is_file()


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_run_example_of_each_kind_composes(kind, tmp_path, monkeypatch):
    """The command `plugin new` prints and the README shows is a valid config with the component."""
    import importlib

    from alignkit.core.pipeline import stage_plan
    from alignkit.core.testing import compose, registry_with

    names = Names.of(f"ex_{kind}")
    target = new_plugin(names.name, tmp_path, kind=kind, check_names=False)
    monkeypatch.syspath_prepend(str(target))
    registry = registry_with([importlib.import_module(f"{names.package}.plugin")])
    command = KINDS[kind].run.format(name=names.name)
    assert command in (target / "README.md").read_text()
    cfg = compose(command.split()[1:], registry)
    assert cfg[KINDS[kind].group].name == names.name and stage_plan(cfg)
