"""The example third-party plugin, pip-installed into a fresh venv next to alignkit, as a user would:
it is listed with its package, a Hydra multirun over its own hyperparameter runs its optimizer and
its feedback provider chosen purely by config (one run directory per value), and its own test
suite (alignkit's contract suites included) passes against the installed packages."""

import json

import pytest
import yaml

pytestmark = pytest.mark.slow  # installs the example into a fresh venv


@pytest.fixture(scope="module")
def kto_venv(install_example, example_dir):
    return install_example(example_dir)


def test_alignkit_plugins_lists_the_plugin_with_its_package(kto_venv, plugin_rows):
    env, _ = kto_venv
    out = env.run("alignkit", "plugins", ALIGNKIT_STRICT_PLUGINS="1").stdout
    rows = plugin_rows(out)
    assert ["optimizer", "kto", "alignkit-kto"] in rows, out
    assert ["feedback_provider", "keyword", "alignkit-kto"] in rows, out
    assert ["optimizer", "dpo", "alignkit"] in rows, out
    assert "not loaded" not in out


def test_multirun_over_the_plugins_hyperparameter_with_its_optimizer_and_provider(kto_venv, tmp_path):
    from alignkit.core.testing import FAST_OVERRIDES, write_contract_data

    env, _ = kto_venv
    data = write_contract_data(tmp_path / "data", ["preferences"])
    sweep = tmp_path / "sweep"
    proc = env.run("alignkit", "-m", "pipeline=dpo", "optimizer=kto", "feedback=keyword", "optimizer.beta=0.1,0.5",
                   *FAST_OVERRIDES, "trainer.max_steps=1", *data, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"], proc.stdout + proc.stderr
    betas = []
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed", summary
        stage = summary["stages"]["kto"]  # pipeline=dpo names its stage after the optimizer
        assert stage["status"] == "completed" and stage["artifacts"] == {"model": "02-kto/model"}
        assert stage["metrics"]["data/feedback_agrees_with_chosen"] == 1.0  # the keyword judge labelled the pairs
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert config["optimizer"]["name"] == "kto" and config["feedback"]["name"] == "keyword"
        betas.append(config["optimizer"]["beta"])
        records = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
        assert any(r["stage"] == "kto" and "kl" in r for r in records), "KTO's own metrics were logged"
    assert betas == [0.1, 0.5]


def test_the_plugins_own_test_suite_passes_against_the_installed_packages(kto_venv, tmp_path):
    env, source = kto_venv
    # -P: import alignkit_kto from site-packages (what pip installed), not from the source folder
    proc = env.run("python", "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests"),
                   cwd=source, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    where = env.run("python", "-P", "-c", "import alignkit_kto, alignkit.core; print(alignkit_kto.__file__); "
                    "print(alignkit.core.__file__)", cwd=tmp_path).stdout.split()
    assert all(str(env.path) in path for path in where), where
