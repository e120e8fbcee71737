"""``alignkit plugin new NAME`` writes a complete, fully rendered package.

That the package installs into a fresh venv, is discovered and passes its own tests (alignkit's
optimizer contract on a real tiny run) is checked by running the tutorial, which does exactly
that as a user would: ``test_writing_plugins_doc.py`` (docs/plugins/writing-plugins.md, step 7).
"""

import re

import pytest

from alignkit.core import ConfigError
from alignkit.core.scaffold import Names, new_plugin


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
