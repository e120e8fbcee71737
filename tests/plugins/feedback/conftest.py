import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from alignkit.core.testing import FAST_OVERRIDES, compose

HERE = Path(__file__).parent
SHARED = Path("/work/shared/datasets")

RULES = '''
CALLS = {"n": 0}

def longer(prompt, response):
    """Prefers the longer response (a test rule with a signal on a random tiny model)."""
    CALLS["n"] += 1
    return float(len(response))

def has_digits(prompt):
    return any(ch.isdigit() for ch in prompt[-1]["content"])

def says_good(prompt, response):
    CALLS["n"] += 1
    return 1.0 if "good" in response else 0.0
'''


@pytest.fixture(scope="session")
def rules_module(tmp_path_factory):
    """An importable module ``fbtest_rules`` with counting rules."""
    folder = tmp_path_factory.mktemp("rules")
    (folder / "fbtest_rules.py").write_text(RULES)
    sys.path.insert(0, str(folder))
    import importlib

    module = importlib.import_module("fbtest_rules")
    yield module
    sys.path.remove(str(folder))


@pytest.fixture
def stage_ctx(tmp_path, registry):
    """A StageContext for a composed config (fast overrides + ``overrides``)."""
    from alignkit.core.pipeline import RunContext, StageContext
    from alignkit.core.rundir import RunDir

    def _make(*overrides, name="label"):
        cfg = compose([*FAST_OVERRIDES, *overrides], registry)
        run = RunContext(cfg, registry, RunDir(tmp_path / "run", pipeline="test"))
        folder = tmp_path / "run" / f"01-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        return StageContext(run=run, name=name, index=1, dir=folder, config=cfg.optimizer, trainer=cfg.trainer,
                            policy=run.model_spec(), previous={})

    return _make


@pytest.fixture(scope="session")
def chat_server():
    """A real chat-completions server process on 127.0.0.1 (tests/plugins/feedback/chat_server.py)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, str(HERE / "chat_server.py")], stdout=subprocess.PIPE, env=env, text=True)
    try:
        port = int(proc.stdout.readline().strip())
        base = f"http://127.0.0.1:{port}"

        def stats():
            with urllib.request.urlopen(base + "/stats", timeout=10) as r:
                return json.loads(r.read())

        yield base, stats
    finally:
        proc.terminate()
        proc.wait(timeout=10)
