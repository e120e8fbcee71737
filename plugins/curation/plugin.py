"""Built-in plugin: instruction data curation.

* data sources ``mixture`` (FLAN-style mixtures) and ``self_instruct`` (teacher-written data);
* ``alignkit_configure``: a mixture's config is checked before anything is built;
* ``alignkit_before_run``: a curation source gets the run's registry from the context its factory
  receives (its nested sources and teacher resolve through the same plugins); this hook gives it
  a sink that writes its manifest to ``<run_dir>/data_manifest.json`` whenever a split is first
  loaded (``interfaces.WritesManifest``), for a pipeline run only (``alignkit evaluate`` of a
  finished run leaves the file as the run wrote it). Nothing is loaded early: the stage that first
  reads the data triggers it, and its errors surface there;
* the ``alignkit data`` command (inspect, generate; ``alignkit.plugins.curation.cli``).
"""

from __future__ import annotations

import logging
from typing import Any

from alignkit.core import AlignkitError, CommandEntry, DataSourceEntry, hookimpl
from alignkit.core.interfaces import WritesManifest

log = logging.getLogger("alignkit.curation")

MANIFEST = "data_manifest.json"
CURATION_SOURCES = ("mixture", "self_instruct")


@hookimpl
def alignkit_data_sources():
    from alignkit.plugins.curation.mixture import MixtureConfig, mixture_source
    from alignkit.plugins.curation.self_instruct import SelfInstructConfig, self_instruct_source

    yield DataSourceEntry(
        name="mixture",
        factory=mixture_source,
        description="several data sources mixed by weights or per-source caps, with prompt templates (FLAN-style)",
        config_schema=MixtureConfig,
    )
    yield DataSourceEntry(
        name="self_instruct",
        factory=self_instruct_source,
        description="SFT data a teacher model writes from seed tasks (Self-Instruct), ROUGE-L and quality filtered",
        config_schema=SelfInstructConfig,
    )


@hookimpl
def alignkit_configure(cfg: Any) -> None:
    data = cfg.get("data") if cfg is not None else None
    if data is not None and data.get("name") == "mixture":
        from alignkit.plugins.curation.mixture import MixtureConfig, check_config
        from alignkit.plugins.curation.records import options

        check_config(options(MixtureConfig, data, "data source 'mixture'"))


@hookimpl
def alignkit_before_run(run: Any) -> None:
    if str(run.cfg.data.get("name")) not in CURATION_SOURCES:
        return
    try:
        source = run.data  # builds the source object only; no data is read yet
    except AlignkitError as exc:  # the stage that reads the data raises it again, inside the run
        log.debug("curation: data source not built before the run: %s", exc)
        return
    if isinstance(source, WritesManifest) and run.is_main_process:
        from alignkit.core.rundir import atomic_write_json

        path = run.run_dir.path / MANIFEST
        source.manifest_sink = lambda manifest: atomic_write_json(path, manifest)


def data_command(argv: list[str]) -> int:
    from alignkit.plugins.curation.cli import main

    return main(argv)


@hookimpl
def alignkit_commands():
    yield CommandEntry(name="data", run=data_command, usage="inspect|generate ...",
                       help="inspect SFT data (quality, diversity) or generate Self-Instruct data")
