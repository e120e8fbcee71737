"""Loading the plugins imports no torch: ``alignkit --help``, ``alignkit plugins`` and the start of
every run (the registry is built before Hydra composes) pay for torch only when a stage needs it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "matplotlib")


def test_building_the_registry_imports_neither_torch_nor_transformers():
    code = ("import sys\n"
            "from alignkit.core.registry import Registry\n"
            "Registry()\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported when plugins load: {done.stdout.strip()}"


def test_the_kv_sampler_and_its_options_share_one_default_budget():
    from alignkit.core.batch_tokens import DEFAULT_BATCH_TOKENS
    from alignkit.core.decoding import KVGenerator
    from alignkit.plugins.generation.plugin import KVGeneratorConfig

    assert KVGeneratorConfig().batch_tokens == KVGenerator().batch_tokens == DEFAULT_BATCH_TOKENS == 16384
