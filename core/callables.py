"""User code named in a config: ``preference_model.fn=package.module:function``.

Rules (verifiable rewards, rule feedback, extra evaluation scorers) are plain Python
functions; this is the one place that turns their config string into a callable, so every
component reports a bad name the same way.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

from alignkit.core.errors import ConfigError


def load_callable(spec: str, *, what: str = "function") -> Callable[..., Any]:
    """Import ``package.module:function`` (``module.attr.attr`` after the colon is allowed)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{what} {spec!r} must look like 'package.module:function'")
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import module '{module_name}': {exc}") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {spec!r}: module '{module_name}' has no attribute '{attr_path}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r} is not callable")
    return obj


def call_scorer(fn: Callable[..., Any], spec: str, prompt: Any, response: str) -> float:
    """``fn(prompt, response)`` as a finite float; anything else is a ``ConfigError`` naming the sample."""
    try:
        value = fn(prompt, response)
    except Exception as exc:
        raise ConfigError(
            f"rule {spec!r} raised {type(exc).__name__}: {exc} (prompt={_short(prompt)!r}, response={_short(response)!r})"
        ) from exc
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"rule {spec!r} returned {value!r}, not a number "
                          f"(prompt={_short(prompt)!r}, response={_short(response)!r})") from None
    if not math.isfinite(number):
        raise ConfigError(f"rule {spec!r} returned {number} (prompt={_short(prompt)!r}, response={_short(response)!r})")
    return number


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else (value[-1]["content"] if isinstance(value, list) and value
                                                 and isinstance(value[-1], dict) else str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
