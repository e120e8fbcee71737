"""docs/plugins/writing-plugins.md is executed, every code block in order, in a fresh venv:
``title="path"`` blocks are written to that file, ``bash`` blocks run (a ``cd`` carries over to
the next block), untitled ``python`` blocks run with the venv's python, and a ``text`` block is
output the block before it must print (each line within a printed line). Any other block fails
the test. Step 7 installs the `alignkit plugin new` skeleton and runs its own tests; its file
listing and its table of kinds are checked against what `plugin new` writes.

docs/plugins/training-api.md: its signatures are checked against the code and its example runs."""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.core.scaffold import KINDS, new_plugin

DOC = Path(__file__).parents[2] / "docs" / "plugins" / "writing-plugins.md"
TRAINING_API = DOC.parent / "training-api.md"
BLOCK = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks():
    found = [(m.group(1), m.group(2).strip(), m.group(3), DOC.read_text()[: m.start()].count("\n") + 1)
             for m in BLOCK.finditer(DOC.read_text())]
    assert len(found) >= 10, "the tutorial lost its code blocks (or the block pattern no longer matches)"
    return found


def _normal(text):
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _shims(env):
    """The tutorial says `pip`; the test venv has no pip of its own. It has no `pytest` script
    either: the tutorial must say `python -m pytest`, which runs the venv's (a bare `pytest`
    may be the system's, which cannot import alignkit)."""
    pip = env.bin / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{env.python}" "$@"\n')
    pip.chmod(0o755)


@pytest.mark.slow  # the whole tutorial in a fresh venv
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


def _section(text, title):
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_the_tutorial_runs_pytest_as_python_m_pytest():
    for lang, _, code, line in blocks():
        if lang == "bash":
            bare = [c for c in code.splitlines() if re.match(r"\s*pytest\b", c)]
            assert not bare, f"writing-plugins.md:{line}: say `python -m pytest`, not {bare[0].strip()!r}"


def test_the_listing_of_section_7_is_what_plugin_new_writes(tmp_path):
    found = blocks()
    index = next(i for i, (lang, _, code, _) in enumerate(found) if lang == "bash" and "alignkit plugin new" in code)
    name = re.search(r"alignkit plugin new (\w+)", found[index][2]).group(1)
    lang, _, listing, line = found[index + 1]
    assert lang == "text", f"writing-plugins.md:{line}: the listing must follow `alignkit plugin new`"
    target = new_plugin(name, tmp_path, check_names=False)
    written = {f"{target.name}/{p.relative_to(target)}" for p in target.rglob("*") if p.is_file()}
    assert set(listing.split()) == written


def test_the_table_of_kinds_is_what_plugin_new_knows():
    rows = re.findall(r"^\| `(\w+)`[^|]*\| `([\w.]+)`[^|]*\| `(\w+)` \| `(\w+)` \|$",
                      _section(DOC.read_text(), "7. Other kinds of plugin"), re.M)
    assert {kind: (module, group, contract) for kind, module, group, contract in rows} == \
           {kind: (f"{k.module}.py", k.group, k.contract) for kind, k in KINDS.items()}


def _documented_signatures():
    code = re.search(r"## Signatures\n\n```text\n(.*?)```", TRAINING_API.read_text(), re.S).group(1)
    for line in code.strip().splitlines():
        path, params = re.fullmatch(r"([\w.]+)\((.*)\)", line.strip()).groups()
        yield line.strip(), path, [p.strip() for p in params.split(",") if p.strip()]


def _resolve(path):
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def test_the_training_api_signatures_are_the_code():
    documented = list(_documented_signatures())
    assert len(documented) >= 10
    for line, path, params in documented:
        signature = inspect.signature(_resolve(path))
        actual = []
        for p in signature.parameters.values():
            if p.kind is p.KEYWORD_ONLY and "*" not in actual:
                actual.append("*")
            actual.append(p.name if p.default is p.empty else f"{p.name}=")
        names = [re.sub(r"=.*", "=", p) for p in params]
        assert names == actual, f"training-api.md: {line} but the code has {path}{signature}"
        for p in params:  # a stated literal default is the code's
            if "=" in p and not p.endswith("..."):
                key, value = p.split("=", 1)
                assert repr(signature.parameters[key].default) == repr(eval(value)), (line, key)


@pytest.mark.slow  # trains with the training API's example (over 3 s)
def test_the_training_api_example_runs(tmp_path):
    text = TRAINING_API.read_text()
    code, expected = re.search(r"## Example.*?```python\n(.*?)```\n\n```text\n(.*?)```", text, re.S).groups()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == expected.strip()
