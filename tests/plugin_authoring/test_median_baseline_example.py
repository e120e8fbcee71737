"""The example third-party advantage estimator (examples/alignkit-median-baseline), pip-installed
into a fresh venv next to alignkit as a user would: it is listed with its package, GRPO runs with
it chosen purely by config (``optimizer.advantage=median_baseline``), and its own tests
(alignkit's ``AdvantageEstimatorContract`` included) pass against the installed packages."""

import json
from pathlib import Path

import pytest
import yaml

EXAMPLE = Path(__file__).parents[2] / "examples" / "alignkit-median-baseline"


@pytest.fixture(scope="module")
def median_venv(install_example):
    return install_example(EXAMPLE)


def test_the_estimator_is_short():
    code = [line for line in (EXAMPLE / "alignkit_median_baseline" / "plugin.py").read_text().splitlines()]
    assert len(code) < 40, "the example promises an estimator in under 40 lines"


@pytest.mark.slow  # installs the example into a fresh venv
def test_alignkit_plugins_lists_the_estimator_with_its_package(median_venv, plugin_rows):
    env, _ = median_venv
    out = env.run("alignkit", "plugins", ALIGNKIT_STRICT_PLUGINS="1").stdout
    rows = plugin_rows(out)
    assert ["advantage_estimator", "median_baseline", "alignkit-median-baseline"] in rows, out
    assert ["advantage_estimator", "grpo", "alignkit"] in rows, out
    assert "not loaded" not in out


@pytest.mark.slow  # installs the example into a fresh venv
def test_grpo_runs_with_the_estimator_chosen_by_config(median_venv, tmp_path):
    import alignkit.plugins.data.demo as demo
    from alignkit.core.testing import FAST_OVERRIDES

    env, _ = median_venv
    run_dir = tmp_path / "run"
    prompts = Path(demo.__file__).parent / "prompts.jsonl"
    proc = env.run("alignkit", "pipeline=grpo", "optimizer.advantage=median_baseline", *FAST_OVERRIDES,
                   "data=files", f"data.prompts={prompts}", "preference_model=rule",
                   "preference_model.fn=alignkit.plugins.rules.demo:concise", "optimizer.samples_per_prompt=2",
                   "trainer.batch_size=4", "optimizer.max_new_tokens=4", "trainer.max_steps=1",
                   "optimizer.eval_prompts=0", f"hydra.run.dir={run_dir}", cwd=tmp_path, ALIGNKIT_STRICT_PLUGINS="1")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stages"]["grpo"]["status"] == "completed", \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert config["optimizer"]["name"] == "grpo" and config["optimizer"]["advantage"] == "median_baseline"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "grpo" and "advantage/abs_mean" in r for r in records), "the GRPO step ran"


@pytest.mark.slow  # installs the example into a fresh venv
def test_the_plugins_own_test_suite_passes_against_the_installed_packages(median_venv, tmp_path):
    env, source = median_venv
    # -P: import alignkit_median_baseline from site-packages (what pip installed), not the source folder
    proc = env.run("python", "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests"),
                   cwd=source, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout and "error" not in proc.stdout.lower()
    where = env.run("python", "-P", "-c", "import alignkit_median_baseline, alignkit.core; "
                    "print(alignkit_median_baseline.__file__); print(alignkit.core.__file__)", cwd=tmp_path).stdout.split()
    assert all(str(env.path) in path for path in where), where
