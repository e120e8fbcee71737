"""``alignkit plugin new NAME``: write a skeleton plugin package that installs and is found as is.

The files come from ``core/templates/plugin`` (``*.tmpl``; ``package/`` becomes the import
package and ``NAME`` in a file name the component name), with ``{{variables}}`` filled in.
The skeleton is an optimizer plugin: pyproject with the entry point, a plugin module with
the registry hook, its Hydra config file, and a test that runs alignkit's optimizer contract.
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


def _variables(names: Names) -> dict[str, str]:
    from alignkit.core import __version__
    from alignkit.core.hookspecs import ALIGNKIT_HOOKS_VERSION

    major = int(ALIGNKIT_HOOKS_VERSION.split(".")[0])
    return {"name": names.name, "package": names.package, "dist": names.dist, "class_name": names.class_name,
            "alignkit_version": __version__, "hooks_version": ALIGNKIT_HOOKS_VERSION,
            "hooks_major_next": str(major + 1)}


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


def new_plugin(raw_name: str, parent: Path, *, check_names: bool = True) -> Path:
    """Write the skeleton for ``raw_name`` into ``parent/<dist>/``; returns that folder."""
    names = Names.of(raw_name)
    if check_names:
        owner = taken_by(names.name)
        if owner is not None:
            raise ConfigError(f"the name '{names.name}' is taken by the {owner}; choose another")
    target = Path(parent) / names.dist
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} already exists and is not empty")
    variables = _variables(names)
    rendered = []
    for parts, text in _walk(files("alignkit.core").joinpath(TEMPLATES)):
        parts = [names.package if p == "package" else p.replace("NAME", names.name) for p in parts]
        rendered.append((target.joinpath(*parts), _render(text, variables)))
    for path, text in rendered:  # every template rendered before the first file is written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="alignkit plugin", description="Tools for plugin authors.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write a skeleton plugin package (an optimizer) that installs as is")
    new.add_argument("name", help="the component's name, e.g. my_opt (package alignkit-my-opt)")
    new.add_argument("--dir", default=".", help="where to create the package folder (default: here)")
    args = parser.parse_args(list(argv))
    try:
        target = new_plugin(args.name, Path(args.dir))
    except ConfigError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        return 2
    names = Names.of(args.name)
    print(f"created {target}: the optimizer '{names.name}' in package {names.dist}\n"
          f"next:\n"
          f"  cd {target}\n"
          f"  pip install -e .        # alignkit finds it through the entry point\n"
          f"  alignkit plugins        # lists '{names.name}'\n"
          f"  pytest                  # alignkit's optimizer contract on a tiny model\n"
          f"  alignkit pipeline=dpo optimizer={names.name} model=tiny-random trainer.max_steps=5")
    return 0
