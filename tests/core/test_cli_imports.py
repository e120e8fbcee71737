"""``alignkit`` starts without the heavy libraries: a stage imports transformers and datasets when
it runs, so ``alignkit --help``, ``alignkit runs`` and a bad override answer at once."""

import subprocess
import sys


def test_importing_the_cli_does_not_import_transformers_or_datasets():
    code = ("import sys, alignkit.core.cli; "
            "print(sorted(m for m in ('transformers', 'datasets', 'accelerate', 'peft', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
