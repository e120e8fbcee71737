"""docs/plugins/writing-plugins.md is executed, every code block in order, in a fresh venv:
``title="path"`` blocks are written to that file, ``bash`` blocks run (a ``cd`` carries over to
the next block), untitled ``python`` blocks run with the venv's python, and a ``text`` block is
output the block before it must print (each line within a printed line). Any other block fails
the test. Step 7 installs the `alignkit plugin new` skeleton and runs its own tests."""

import os
import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "plugins" / "writing-plugins.md"
BLOCK = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks():
    found = [(m.group(1), m.group(2).strip(), m.group(3), DOC.read_text()[: m.start()].count("\n") + 1)
             for m in BLOCK.finditer(DOC.read_text())]
    assert len(found) >= 10, "the tutorial lost its code blocks (or the block pattern no longer matches)"
    return found


def _normal(text):
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _shims(env):
    """The tutorial says `pip` and `pytest`; the test venv has neither of its own."""
    pip = env.bin / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{env.python}" "$@"\n')
    pytest_ = env.bin / "pytest"
    pytest_.write_text(f'#!/bin/sh\nexec "{env.python}" -m pytest -p no:cacheprovider "$@"\n')
    for shim in (pip, pytest_):
        shim.chmod(0o755)


def test_every_code_block_of_the_tutorial_runs(make_venv, tmp_path):
    env = make_venv(tmp_path / "venv")
    _shims(env)
    # offline, no build isolation (setuptools comes from the test runner), dependencies present
    variables = {"PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1", "PIP_QUIET": "1"}
    cwd = tmp_path / "work"
    cwd.mkdir()
    state = tmp_path / "cwd"
    output = None
    ran = 0
    for lang, info, code, line in blocks():
        where = f"writing-plugins.md:{line} ({lang} {info})".strip()
        title = re.fullmatch(r'title="([^"]+)"', info)
        if title:
            path = cwd / title.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
            output = None
        elif lang == "bash":
            proc = env.run("bash", "-c", f"set -eo pipefail\n{code}\npwd > '{state}'", cwd=cwd, check=False,
                           **variables)
            assert proc.returncode == 0, f"{where} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            cwd = Path(state.read_text().strip())
            output = proc.stdout
        elif lang == "python":
            proc = env.run("python", "-c", code, cwd=cwd, check=False)
            assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-4000:]}"
            output = proc.stdout
        elif lang == "text":
            assert output is not None, f"{where}: an output block must follow a command"
            printed = _normal(output)
            for expected in _normal(code):
                assert any(expected in line for line in printed), \
                    f"{where}: {expected!r} not printed; got:\n{output[-3000:]}"
        else:
            pytest.fail(f"{where}: the test does not know how to run a '{lang}' block; give it a title= "
                        f"or make it bash/python/text")
        ran += 1
    assert ran == len(blocks())
