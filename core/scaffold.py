"""``alignkit plugin new NAME [--kind KIND]``: write a skeleton plugin package that installs and
is found as is.

The files come from ``core/templates/plugin/common`` plus ``core/templates/plugin/<kind>``
(``*.tmpl``; ``package/`` becomes the import package and ``NAME`` in a file name the component
name), with ``{{variables}}`` filled in: a pyproject with the entry point and a ``test`` extra,
a plugin module with the registry hook, a working minimal component, its Hydra config file,
and a test that runs alignkit's contract suite for that kind.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Sequence

from alignkit.core.errors import ConfigError

TEMPLATES = "templates/plugin"
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Kind:
    """One kind of component ``plugin new --kind`` writes: its template folder and how it is named."""

    noun: str  # optimizer, feedback provider, ...
    registry_kind: str  # Registry.components(...) key
    group: str  # Hydra config group: <group>=<name>
    module: str  # <package>/<module>.py holds the component
    hook: str  # the registry hook plugin.py implements
    contract: str  # the suite in alignkit.core.testing its test subclasses
    run: str  # a command that uses it ({name} filled in)
    what_to_change: str


KINDS: dict[str, Kind] = {
    "optimizer": Kind("optimizer", "optimizer", "optimizer", "optimizer", "alignkit_optimizers", "OptimizerContract",
                      "alignkit pipeline=dpo optimizer={name} model=tiny-random trainer.max_steps=5",
                      "it starts as supervised training on the preferred response of each pair; replace "
                      "`loss()` with your objective (docs/plugins/training-api.md)."),
    "feedback": Kind("feedback provider", "feedback_provider", "feedback", "provider", "alignkit_feedback_providers",
                     "FeedbackProviderContract",
                     "alignkit pipeline=preference feedback={name} model=tiny-random label.prompts=4",
                     "it starts as a toy rule (more distinct words wins); replace `score()` with your judge. "
                     "`feedback.cache=true` keeps its judgements on disk."),
    "data": Kind("data source", "data_source", "data", "source", "alignkit_data_sources", "DataSourceContract",
                 "alignkit pipeline=sft data={name} model=tiny-random trainer.max_steps=5",
                 "it starts with a few records written in the module; replace `records()` with reading your data."),
    "preference_model": Kind("preference model", "preference_model", "preference_model", "scorer",
                             "alignkit_preference_models", "PreferenceModelContract",
                             "alignkit pipeline=grpo preference_model={name} model=tiny-random trainer.max_steps=2",
                             "it starts as a toy rule (a reply near a target length scores highest); replace "
                             "`score_one()` with your scorer."),
    "generator": Kind("generation backend", "generator", "generation", "backend", "alignkit_generators",
                      "GeneratorContract",
                      "alignkit pipeline=grpo generation={name} preference_model=rule "
                      "preference_model.fn=alignkit.plugins.rules.demo:arithmetic_correct model=tiny-random",
                      "it starts as a plain sampling loop without a KV cache; replace `generate()` with your engine."),
}
DEFAULT_KIND = "optimizer"


@dataclass(frozen=True)
class Names:
    """How one plugin name is spelled in each place."""

    name: str  # registry and entry-point name, config file name: my_opt
    package: str  # import package: alignkit_my_opt
    dist: str  # distribution (pip) name: alignkit-my-opt
    class_name: str  # MyOpt

    @classmethod
    def of(cls, raw: str) -> Names:
        raw = raw.strip()
        if not _NAME.match(raw):
            raise ConfigError(f"plugin name {raw!r}: use lower-case letters, digits, '_' or '-', starting "
                              f"with a letter (e.g. my_opt)")
        name = raw.replace("-", "_")
        return cls(name=name, package=f"alignkit_{name}", dist=f"alignkit-{name.replace('_', '-')}",
                   class_name="".join(part.capitalize() for part in name.split("_") if part))


def _variables(names: Names, kind: Kind) -> dict[str, str]:
    from alignkit.core import __version__
    from alignkit.core.hookspecs import ALIGNKIT_HOOKS_VERSION

    major = int(ALIGNKIT_HOOKS_VERSION.split(".")[0])
    return {"name": names.name, "package": names.package, "dist": names.dist, "class_name": names.class_name,
            "alignkit_version": __version__, "hooks_version": ALIGNKIT_HOOKS_VERSION,
            "hooks_major_next": str(major + 1), "kind_noun": kind.noun, "group": kind.group, "module": kind.module,
            "hook": kind.hook, "contract": kind.contract, "run_example": kind.run.format(name=names.name),
            "what_to_change": kind.what_to_change}


def kind_of(raw: str) -> Kind:
    if raw not in KINDS:
        raise ConfigError(f"plugin kind '{raw}': choose one of {', '.join(KINDS)}")
    return KINDS[raw]


def _render(text: str, variables: dict[str, str]) -> str:
    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in variables:
            raise KeyError(f"template variable {{{{{key}}}}} is not defined")
        return variables[key]

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


def _walk(node, prefix: tuple[str, ...] = ()):
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            yield from _walk(child, (*prefix, child.name))
        elif child.name.endswith(".tmpl"):
            yield (*prefix, child.name[: -len(".tmpl")]), child.read_text(encoding="utf-8")


def taken_by(name: str) -> str | None:
    """Which installed package already offers a component or plugin called ``name``, if any."""
    from alignkit.core.registry import Registry

    registry = Registry()
    for kind, registered in registry.all():
        if registered.entry.name == name:
            return f"{kind} '{name}' from package '{registered.package}'"
    if registry.pm.get_plugin(name) is not None:
        return f"plugin '{name}'"
    return None


def new_plugin(raw_name: str, parent: Path, *, kind: str = DEFAULT_KIND, check_names: bool = True) -> Path:
    """Write the skeleton of a ``kind`` component called ``raw_name`` into ``parent/<dist>/``;
    returns that folder."""
    names = Names.of(raw_name)
    component = kind_of(kind)
    if check_names:
        owner = taken_by(names.name)
        if owner is not None:
            raise ConfigError(f"the name '{names.name}' is taken by the {owner}; choose another")
    target = Path(parent) / names.dist
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} already exists and is not empty")
    variables = _variables(names, component)
    rendered = []
    root = files("alignkit.core").joinpath(TEMPLATES)
    for folder in ("common", kind):
        for parts, text in _walk(root.joinpath(folder)):
            parts = [names.package if p == "package" else p.replace("NAME", names.name) for p in parts]
            rendered.append((target.joinpath(*parts), _render(text, variables)))
    for path, text in rendered:  # every template rendered before the first file is written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="alignkit plugin", description="Tools for plugin authors.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write a skeleton plugin package that installs as is")
    new.add_argument("name", help="the component's name, e.g. my_opt (package alignkit-my-opt)")
    new.add_argument("--kind", default=DEFAULT_KIND, choices=list(KINDS),
                     help=f"what the plugin adds (default: {DEFAULT_KIND})")
    new.add_argument("--dir", default=".", help="where to create the package folder (default: here)")
    args = parser.parse_args(list(argv))
    try:
        target = new_plugin(args.name, Path(args.dir), kind=args.kind)
    except ConfigError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        return 2
    names, kind = Names.of(args.name), KINDS[args.kind]
    print(f"created {target}: the {kind.noun} '{names.name}' in package {names.dist}\n"
          f"next:\n"
          f"  cd {target}\n"
          f"  pip install -e '.[test]'   # alignkit finds it through the entry point\n"
          f"  alignkit plugins           # lists '{names.name}'\n"
          f"  python -m pytest           # alignkit's {kind.noun} contract (not a bare `pytest`: it may be "
          f"another environment's)\n"
          f"  {kind.run.format(name=names.name)}")
    return 0
