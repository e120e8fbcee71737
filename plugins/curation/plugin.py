"""Built-in plugin: instruction data curation.

* data sources ``mixture`` (FLAN-style mixtures) and ``self_instruct`` (teacher-written data);
* ``alignkit_configure``: a mixture's config is checked before anything is built;
* ``alignkit_before_run``: data sources are built by the runner from their config alone and
  know nothing of the run, so this hook hands a curation source the run's registry (its
  nested sources and teacher resolve through the same plugins) and a sink that writes its
  manifest to ``<run_dir>/data_manifest.json`` whenever a split is first loaded. Nothing is
  loaded early: the stage that first reads the data triggers it, and its errors surface there.

The ``alignkit data`` command (inspect, generate) is registered in the ``alignkit.commands``
entry-point group (``alignkit.plugins.curation.cli:main``).
"""

from __future__ import annotations

import logging
from typing import Any

from alignkit.core import AlignkitError, DataSourceEntry, hookimpl

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
    if getattr(source, "registry", "absent") is None:
        source.registry = run.registry
    if hasattr(source, "manifest_sink") and run.is_main_process:
        from alignkit.core.rundir import atomic_write_json

        path = run.run_dir.path / MANIFEST
        source.manifest_sink = lambda manifest: atomic_write_json(path, manifest)
