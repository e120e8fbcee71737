"""The contract itself: every hook prefixed, typed, documented, in the docs, and implemented somewhere."""

import inspect
from pathlib import Path

from alignkit.core import hookspecs

HOOKS = [name for name, fn in vars(hookspecs).items() if name.startswith("alignkit_") and callable(fn)]
DOCS = Path(__file__).parents[2] / "docs" / "plugins" / "hooks.md"


def test_the_contract_has_the_extension_points():
    assert {
        "alignkit_data_sources", "alignkit_feedback_providers", "alignkit_preference_models",
        "alignkit_optimizers", "alignkit_loggers", "alignkit_config_searchpath", "alignkit_load_model",
        "alignkit_configure", "alignkit_before_run", "alignkit_after_step", "alignkit_after_stage",
        "alignkit_after_run",
    } <= set(HOOKS)


def test_every_hook_is_typed_and_documented():
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, name
        for param in sig.parameters.values():
            assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name})"
            assert f":param {param.name}:" in fn.__doc__, f"{name} does not document {param.name}"
        assert fn.__doc__ and "called" in fn.__doc__.lower(), f"{name} does not say when it is called"


def test_firstresult_hooks_say_so():
    fn = hookspecs.alignkit_load_model
    assert fn.alignkit_spec["firstresult"] is True
    assert "Stops at first non-None result" in fn.__doc__


def test_every_hook_is_in_the_reference_docs():
    text = DOCS.read_text()
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})" in text, f"docs/plugins/hooks.md does not document {name}({params})"
