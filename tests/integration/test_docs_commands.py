"""Every ``alignkit`` command shown in README.md and docs/ still works.

Each run command in a shell block is composed exactly as the CLI composes it and passes the
pre-run check (core/preflight.py: every stage's options, components, callables, models), on
tiny-random: the hub is out of reach here, and a model swap changes no option's meaning.
Sweeps are expanded into their jobs. Subcommands must exist. The README's smoke command and its
sweep run for real.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.core.testing import compose

pytestmark = pytest.mark.slow  # composes every documented command; runs the README's

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell|console)\n(.*?)```", re.S)
ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
VARIABLE = re.compile(r"\$([A-Z][A-Z0-9_]*)\b")
# Shell variables the docs set with a command rather than a value.
PRESET = {"DEMO": str(ROOT / "plugins" / "data" / "demo")}
SUBCOMMANDS = {"plugins", "plugin", "report", "evaluate", "label", "data", "runs", "resume"}
# Placeholders the docs use for the reader's own things, and what stands in for them here.
PLACEHOLDER_FILES = ("train.jsonl", "pairs.jsonl", "held_out.jsonl", "prompts.jsonl")
PLACEHOLDER_FUNCTION = re.compile(r"\b(?:pkg\.mod:fn|package\.module:function|mypackage\.[a-z_.]+:[a-z_]+)\b")
PLACEHOLDER_FOLDER = re.compile(r"\bRM_[A-Z]+\b")
STAND_IN_FUNCTION = "alignkit.plugins.rules.demo:concise"


def shell_commands(path: Path) -> list[tuple[str, str]]:
    """(``file:line``, command) for every ``alignkit`` line of the file's shell blocks, with
    backslash continuations joined and ``NAME="..."`` variables of the same file substituted."""
    text = path.read_text()
    variables: dict[str, str] = dict(PRESET)
    found = []
    for block in SHELL_BLOCK.finditer(text):
        line_no = text.count("\n", 0, block.start(1)) + 1
        pending, started = "", line_no
        for offset, line in enumerate(block.group(1).splitlines()):
            if not pending:
                started = line_no + offset
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            stripped, pending = pending.strip(), ""
            tokens = shlex.split(stripped, comments=True) if stripped else []
            assign = ASSIGNMENT.match(tokens[0]) if len(tokens) == 1 else None
            if assign and assign.group(1) not in PRESET:
                variables[assign.group(1)] = assign.group(2)
            elif stripped == "alignkit" or stripped.startswith("alignkit "):
                for _ in range(3):  # variables that hold variables
                    stripped = VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), stripped)
                found.append((f"{path.relative_to(ROOT)}:{started}", stripped))
    return found


def all_commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in DOCS:
        for where, command in shell_commands(path):
            args = shlex.split(command, comments=True)[1:]
            out.append((where, args))
    return out


def jobs(args: list[str], workdir: Path) -> list[list[str]]:
    """The overrides of each job a command runs, in a form that composes here."""
    overrides = []
    for arg in args:
        if arg in ("-m", "--multirun", "--dry-run", "...") or arg.startswith("hydra."):
            continue
        arg = PLACEHOLDER_FUNCTION.sub(STAND_IN_FUNCTION, arg)
        arg = PLACEHOLDER_FOLDER.sub(str(workdir / "rm"), arg)
        key, _, value = arg.partition("=")
        if key == "model":
            arg = "model=tiny-random"  # hub ids and <placeholders>: the hub is unreachable here
        elif key.startswith("model."):
            continue
        elif value.startswith("owner/name"):  # a hub dataset: a local file of the same kind stands in
            arg = f"{key}={workdir / 'pairs.jsonl'}"
        elif value in PLACEHOLDER_FILES:
            arg = f"{key}={workdir / value}"
        overrides.append(arg)
    if not any(a.startswith("model=") for a in overrides):
        overrides.append("model=tiny-random")
    sweeps = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")]
              if "-m" in args and "," in a and not a.split("=", 1)[1].startswith("[") else [a] for a in overrides]
    return [list(combo) for combo in itertools.product(*sweeps)]


COMMANDS = all_commands()
# "alignkit pipeline=rloo ..." (the same arguments as the line before) is prose, not a command.
RUNS = [(where, args) for where, args in COMMANDS if not (args and args[0] in SUBCOMMANDS) and "..." not in args]


def test_the_docs_show_commands_to_check():
    assert len(RUNS) > 40, "the command parser found too few commands: has the docs' format changed?"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    sft = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    pair = '{"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "go"}\n'
    (folder / "train.jsonl").write_text(sft * 4)
    (folder / "pairs.jsonl").write_text(pair * 4)
    (folder / "held_out.jsonl").write_text(pair * 2)
    (folder / "prompts.jsonl").write_text('{"prompt": "hi"}\n' * 4)
    (folder / "labels.jsonl").write_text(pair * 2)
    (folder / "rm").mkdir()
    return folder


@pytest.mark.parametrize(("where", "args"), RUNS, ids=[f"{w} {' '.join(a)[:60]}" for w, a in RUNS])
def test_every_documented_run_composes_and_passes_the_pre_run_check(where, args, workdir, registry, monkeypatch):
    from alignkit.core.preflight import preflight

    monkeypatch.chdir(workdir)
    for overrides in jobs(args, workdir):
        try:
            cfg = compose(overrides, registry)
            preflight(cfg, registry)
        except Exception as exc:  # noqa: BLE001 - the message names the doc line that broke
            pytest.fail(f"{where}: `alignkit {' '.join(args)}` (checked as {overrides}) fails: "
                        f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("name", sorted({args[0] for _, args in COMMANDS if args and args[0] in SUBCOMMANDS}))
def test_every_documented_subcommand_exists(name):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    args = ["new", "--help"] if name == "plugin" else ["--help"]
    done = subprocess.run([sys.executable, "-m", "alignkit.core.cli", name, *args], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage" in done.stdout.lower() and "Traceback" not in done.stderr, done.stdout + done.stderr


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "alignkit.core.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=900)


def test_the_readme_smoke_command_runs_as_written(tmp_path):
    readme = {" ".join(args) for where, args in COMMANDS if where.startswith("README.md")}
    assert "pipeline=dpo model=tiny-random" in readme
    done = _run(["pipeline=dpo", "model=tiny-random"], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "summary.json").exists()
    assert '"status": "completed"' in (run_dirs[0] / "summary.json").read_text()
