"""docs/architecture.md, docs/configuration.md and conf/config.yaml's comments stay true to the code.

What can be checked mechanically is: every path the architecture names exists; every core module,
conf/ directory, hook spec and built-in plugin is described, each plugin with the hooks it really
implements and every name it really registers; the imports between plugins are exactly the ones
the page admits; the pipeline tables say which pipelines end with ``evaluate``; every group option
is listed; and every option a comment of conf/config.yaml names exists. (That every hook spec has an
``Example::`` is tests/core/test_hook_coverage.py's.)
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from alignkit.core import hookspecs
from alignkit.plugins import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
CONFIG_YAML = ROOT / "conf" / "config.yaml"

NOT_GROUPS = {"accelerate", "constitution"}  # conf/ folders of files an option names (core/preflight.py)
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if name.startswith("alignkit_") and callable(fn))
PATH = re.compile(r"(?<![\w/.])((?:core|plugins|conf|examples|tests)/[A-Za-z0-9_./-]*)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _exists(relative: str) -> bool:
    path = ROOT / relative.split("::")[0].rstrip("/.")
    return path.exists() or path.with_suffix(".py").exists()


def _conf_dirs() -> list[str]:
    return sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and not p.name.startswith("__"))


def _options(group: str) -> set[str]:
    return {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}


def _table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]


def _ticked(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def _section(text: str, start: str) -> str:
    """From the line holding ``start`` to the next heading of any level."""
    assert start in text, f"the page has no '{start}'"
    tail = text[text.index(start):]
    following = re.search(r"\n#{1,6} ", tail[len(start):])
    return tail if following is None else tail[: len(start) + following.start()]


# -- docs/architecture.md ----------------------------------------------------------------------------


LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", ["ARCHITECTURE", "CONFIGURATION", "CONFIG_YAML"])
def test_every_path_the_page_names_exists(doc):
    page = globals()[doc]
    text = _text(page)
    links = LINK.findall(text)  # markdown links are relative to the page's folder
    named = {m.group(1) for m in PATH.finditer(LINK.sub("]()", text))}
    missing = sorted(p for p in named if not _exists(p))
    missing += sorted(link for link in links if not (page.parent / link).exists())
    assert named and not missing, f"{page.name} names paths that do not exist: {missing}"


def test_every_core_module_is_described():
    text = _text(ARCHITECTURE)
    modules = [p.stem for p in (ROOT / "core").glob("*.py") if p.name != "__init__.py"]
    modules += [p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").exists()]  # packages
    missing = sorted(m for m in modules if not re.search(rf"core/{m}(\.py)?\b", text))
    assert not missing, f"docs/architecture.md does not describe core modules {missing}"


def test_every_conf_directory_is_described():
    text = _text(ARCHITECTURE)
    missing = [d for d in _conf_dirs() if f"`conf/{d}/`" not in text]
    assert not missing, f"docs/architecture.md's conf/ table lacks {missing}"


def test_every_hook_spec_is_named():
    text = _text(ARCHITECTURE)
    missing = [hook for hook in HOOKS if f"`{hook}`" not in text]
    assert not missing, f"docs/architecture.md does not name the hooks {missing}"


def _plugin_rows() -> dict[str, list[str]]:
    table = _section(_text(ARCHITECTURE), "## The built-in plugins")
    return {next(iter(_ticked(row[0])), row[0]): row for row in _table_rows(table)[1:]}


def _hookimpls(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {name for name, fn in vars(module).items()
            if name.startswith("alignkit_") and hasattr(fn, f"{hookspecs.PROJECT}_impl")}


@pytest.mark.parametrize(("plugin", "module"), BUILTIN_PLUGINS, ids=[p for p, _ in BUILTIN_PLUGINS])
def test_each_builtin_plugin_row_names_its_hooks_and_what_it_registers(plugin, module, registry):
    rows = _plugin_rows()
    assert plugin in rows, f"docs/architecture.md's plugin table has no row for '{plugin}' ({module})"
    _, path, hooks, registers = rows[plugin]
    assert _ticked(path) == {module.removeprefix("alignkit.").replace(".", "/") + ".py"}, plugin
    assert _ticked(hooks) == _hookimpls(module), f"row '{plugin}': the hooks {module} implements"
    kinds = [*registry_kinds(), "advantage_estimator", "policy_loss", "command"]
    registered = {name for kind in kinds for name, found in registry.components(kind).items()
                  if found.plugin_name == plugin}
    missing = sorted(registered - _ticked(registers))
    assert not missing, f"row '{plugin}' does not name what it registers: {missing}"


def registry_kinds() -> list[str]:
    from alignkit.core.types import ENTRY_KINDS

    return [kind.kind for kind in ENTRY_KINDS]


def test_no_row_names_a_plugin_that_is_not_built_in():
    extra = sorted(set(_plugin_rows()) - {p for p, _ in BUILTIN_PLUGINS})
    assert not extra, f"docs/architecture.md's plugin table names plugins that do not exist: {extra}"


def _plugin_imports() -> set[tuple[str, str]]:
    """(importer, imported) for every import of one built-in plugin package by another."""
    found = set()
    for source in (ROOT / "plugins").rglob("*.py"):
        owner = source.relative_to(ROOT / "plugins").parts[0]
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                parts = name.split(".")
                if parts[:2] == ["alignkit", "plugins"] and len(parts) > 2 and parts[2] != owner:
                    found.add((owner, parts[2]))
    return found


def test_the_imports_between_plugins_are_the_ones_the_page_admits():
    paragraph = _section(_text(ARCHITECTURE), "**How plugins depend on each other.**").split("\n\n", 1)[0]
    admitted = set(re.findall(r"`(\w+)` -> `(\w+)`", paragraph))
    assert admitted == _plugin_imports(), (
        "docs/architecture.md ('How plugins depend on each other') lists plugin imports "
        f"{sorted(admitted)}; the code has {sorted(_plugin_imports())}")


def _last_stage(pipeline: str) -> str:
    stages = yaml.safe_load(_text(ROOT / "conf" / "pipeline" / f"{pipeline}.yaml"))["pipeline"]["stages"]
    return str(stages[-1]["name"])


def _pipeline_rows(text: str) -> dict[str, str]:
    rows = {}
    for row in _table_rows(text):
        for name in _ticked(row[0]):
            rows[name] = " | ".join(row[1:])
    return rows


@pytest.mark.parametrize("doc", [ARCHITECTURE, CONFIGURATION], ids=["architecture", "configuration"])
def test_every_pipeline_has_a_row_that_says_whether_it_ends_with_evaluate(doc):
    table = _pipeline_rows(_section(_text(doc), "| pipeline | stages |"))
    for pipeline in sorted(_options("pipeline")):
        assert pipeline in table, f"{doc.name}'s pipeline table has no row for '{pipeline}'"
        row, last = table[pipeline], _last_stage(pipeline)
        says_none = "no evaluate" in row or "no `evaluate`" in row or "trains nothing" in row
        if last == "evaluate":
            assert "evaluate" in row and not says_none, f"{doc.name}: '{pipeline}' ends with evaluate"
        else:
            assert says_none, f"{doc.name}: '{pipeline}' ends with '{last}', not evaluate; its row must say so"


def test_the_architecture_does_not_repeat_the_claims_issue_21_found_false():
    text = _text(ARCHITECTURE)
    for claim in ("never each other", "no algorithm, model or storage code", "last stage of every pipeline"):
        assert claim not in text, f"docs/architecture.md still says '{claim}'"


# -- docs/configuration.md ---------------------------------------------------------------------------


def test_every_group_and_option_is_in_the_groups_table():
    rows = {next(iter(_ticked(row[0])), ""): row for row in _table_rows(_section(_text(CONFIGURATION), "## Groups"))}
    for group in _conf_dirs():
        if group in NOT_GROUPS:
            assert f"conf/{group}/" in _text(CONFIGURATION), f"docs/configuration.md does not explain conf/{group}/"
            continue
        assert group in rows, f"docs/configuration.md's Groups table has no row for '{group}'"
        missing = sorted(_options(group) - _ticked(rows[group][1]))
        assert not missing, f"docs/configuration.md's '{group}' row does not list {missing}"


# -- conf/config.yaml's comments ---------------------------------------------------------------------


def _folder_of(key: str) -> str | None:
    folder = {"config": "accelerate"}.get(key, key)  # launcher.config names conf/accelerate/
    return folder if (ROOT / "conf" / folder).is_dir() else None


def test_config_yaml_comments_name_only_options_that_exist():
    wrong = []
    for number, line in enumerate(_text(CONFIG_YAML).splitlines(), start=1):
        code, _, comment = line.partition("#")
        key = re.match(r"\s*(?:- )?(?:optional )?(\w+)(?:@\w+)?:", code)
        choices = re.search(r"\w[\w-]*(?:\s*\|\s*\w[\w-]*)+", comment)
        if key and choices and _folder_of(key.group(1)):
            folder = _folder_of(key.group(1))
            words = [w.strip() for w in choices.group(0).split("|")]
            wrong += [f"line {number}: {folder} has no '{w}'" for w in words if w not in _options(folder)]
        for group, option in re.findall(r"\b(\w+)=([A-Za-z][\w-]*)\b", comment):
            if (ROOT / "conf" / group).is_dir() and group not in NOT_GROUPS and option not in _options(group):
                wrong.append(f"line {number}: {group}={option} is not in conf/{group}/")
    assert not wrong, "conf/config.yaml's comments name options that do not exist: " + "; ".join(wrong)


def test_every_group_of_the_defaults_list_exists_or_says_it_has_no_options():
    lines = _text(CONFIG_YAML).splitlines()
    for number, line in enumerate(lines):
        item = re.match(r"\s*- (?:optional )?(\w+)(?:@\w+)?:", line)
        if item and not (ROOT / "conf" / item.group(1)).is_dir():
            above = lines[number - 2: number] if number >= 2 else []
            assert any("no built-in options" in a for a in above), (
                f"conf/config.yaml line {number + 1}: group '{item.group(1)}' has no conf/{item.group(1)}/ "
                "and no comment saying what it is for")
