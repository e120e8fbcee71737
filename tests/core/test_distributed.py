"""The pieces of multi-process runs: the launch command, the shipped accelerate files, batch shards
and their loss weights, and main-process-only work between two real processes (whole pipelines
under 2 processes are in tests/integration/test_multiprocess.py)."""

import json
from pathlib import Path

import pytest
import yaml

from alignkit.core import launcher
from alignkit.core.engine import _micro_weights, shard_batch
from alignkit.core.errors import ConfigError
from alignkit.core.testing import compose


def test_every_shipped_accelerate_config_is_a_valid_accelerate_file():
    from accelerate.commands.config.config_args import load_config_from_file

    assert {"cpu", "ddp", "fsdp", "zero2", "zero3", "multinode"} <= set(launcher.config_names())
    for name in launcher.config_names():
        path = launcher.resolve_config(name)
        assert "Run:" in path.read_text()[:600], name
        loaded = load_config_from_file(str(path))
        assert loaded.num_processes >= 2, name
    fsdp = yaml.safe_load(launcher.resolve_config("fsdp").read_text())
    assert fsdp["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert yaml.safe_load(launcher.resolve_config("zero3").read_text())["deepspeed_config"]["zero_stage"] == 3


def test_no_launch_by_default_and_one_when_asked():
    assert not launcher.launch_requested(compose([]))
    assert launcher.launch_requested(compose(["launcher.num_processes=2"]))
    assert launcher.launch_requested(compose(["launcher.config=fsdp"]))
    with pytest.raises(ConfigError, match="launcher.config=<name>"):  # the files are not Hydra options
        launcher.launch_requested(compose(["+accelerate=fsdp"]))


def test_the_launch_command_repeats_the_job_in_the_same_run_directory(tmp_path):
    cfg = compose(["launcher.num_processes=4", "launcher.config=fsdp"])
    cmd = launcher.launch_command(cfg, ["pipeline=dpo", "trainer.max_steps=3"], tmp_path)
    i = cmd.index("--config_file")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert Path(cmd[i + 1]).name == "fsdp.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[-5:] == ["-m", "alignkit.core.cli", "pipeline=dpo", "trainer.max_steps=3", f"hydra.run.dir={tmp_path}"]


def test_multinode_needs_the_main_address_and_passes_the_machine_rank(tmp_path):
    with pytest.raises(ConfigError, match="main_process_ip"):
        launcher.launch_command(compose(["launcher.num_machines=2"]), [], tmp_path)
    cfg = compose(["launcher.config=multinode", "launcher.machine_rank=1", "launcher.main_process_ip=10.1.2.3"])
    cmd = launcher.launch_command(cfg, [], tmp_path)
    assert cmd[cmd.index("--machine_rank") + 1] == "1"
    assert cmd[cmd.index("--main_process_ip") + 1] == "10.1.2.3"
    assert "--num_processes" not in cmd  # the config's 16


def test_an_unknown_config_names_the_shipped_ones(tmp_path):
    with pytest.raises(ConfigError, match="ddp.*fsdp"):
        launcher.resolve_config("fdsp")
    with pytest.raises(ConfigError, match="no such"):
        launcher.resolve_config(str(tmp_path / "mine.yaml"))
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    assert launcher.resolve_config(str(own)) == own


def test_sweep_and_search_path_overrides_are_not_repeated():
    kept = launcher.child_overrides(["trainer.learning_rate=1e-05"],
                                    ["hydra.searchpath=[pkg://x]", "hydra.run.dir=a", "hydra.sweep.dir=b",
                                     "hydra.mode=MULTIRUN", "hydra.job.chdir=true"])
    assert kept == ["trainer.learning_rate=1e-05", "hydra.job.chdir=true"]


def test_shards_cover_the_global_batch_once():
    batch = list(range(7))
    parts = [shard_batch(batch, r, 3) for r in range(3)]
    assert sum(parts, []) == batch
    assert sorted(len(p) for p in parts) == [2, 2, 3]


class _Tokens:
    """A task whose batch weight is the examples' token counts (additive, like SFT's)."""

    tokens = [3, 1, 4, 1, 5, 9, 2, 6]

    def batch_weight(self, batch):
        return sum(self.tokens[i] for i in batch)


@pytest.mark.parametrize("task", [_Tokens(), object()], ids=["by-tokens", "by-examples"])
def test_shard_weights_add_up_to_the_single_process_weights(task):
    batches = [[0, 1, 2, 3], [4, 5, 6, 7]]
    single = _micro_weights(task, batches)
    world = 2
    per_rank = [_micro_weights(task, batches, [shard_batch(b, r, world) for b in batches], world)
                for r in range(world)]
    # DDP averages over processes: rank weights / world, summed over ranks, give one process's weights.
    for micro in range(len(batches)):
        assert sum(w[micro] for w in per_rank) / world == pytest.approx(single[micro])
    assert sum(single) == pytest.approx(1.0)


WORKER = """
import json, sys
import json
from pathlib import Path
from alignkit.core import distributed

out = Path(sys.argv[1])

def main_only_work():
    distributed.barrier()  # a no-op here: the other process is not in this section
    with open(out / "written.txt", "a") as fh:
        fh.write(f"rank {distributed.rank()}\\n")
    return {"from": distributed.rank()}

result = distributed.run_on_main(main_only_work)
shares = distributed.gather(distributed.rank() * 10)
distributed.barrier()
(out / f"result-{distributed.rank()}.json").write_text(json.dumps({"result": result, "shares": shares}))
"""


@pytest.mark.slow  # starts two processes (over 3 s)
def test_main_only_work_runs_once_and_every_process_gets_its_result(tmp_path):
    """Two real processes (gloo): ``run_on_main`` as the runner uses it for stages with ``data_parallel = False``."""
    import os
    import socket
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert (tmp_path / "written.txt").read_text() == "rank 0\n"
    for rank in range(2):
        got = json.loads((tmp_path / f"result-{rank}.json").read_text())
        assert got == {"result": {"from": 0}, "shares": [0, 10]}
