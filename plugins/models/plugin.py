"""Built-in model loader: aliases, local folders, GGUF files and hub ids (the fallback loader).

Registered as the ``models`` entry point of the ``alignkit`` group. A third-party plugin
that answers ``alignkit_load_model`` first (pluggy calls later-registered plugins first)
takes precedence; this one answers every spec it can recognise.
"""

from __future__ import annotations

from alignkit.core import LoadedModel, ModelSpec, hookimpl
from alignkit.plugins.models.resolve import load_model


@hookimpl(trylast=True)
def alignkit_load_model(spec: ModelSpec, role: str) -> LoadedModel | None:
    """Load ``spec`` for ``role`` (see ``alignkit.plugins.models.resolve``)."""
    return load_model(spec, role)
