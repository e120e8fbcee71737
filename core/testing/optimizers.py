"""``OptimizerContract``: what every optimizer promises the stage runner, checked by one real run."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from alignkit.core.testing.components import _ComponentContract
from alignkit.core.testing.data import write_contract_data
from alignkit.core.testing.helpers import FAST_OVERRIDES, compose, make_stage_context


def _skip_the_stages_after(cfg: Any, optimizer: str) -> None:
    """Add the stages after the last one running ``optimizer`` to ``pipeline.skip``."""
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import stage_plan

    plan = stage_plan(cfg)
    names = [str(s.name) for s in plan]
    runs = [i for i, s in enumerate(plan) if s.get("optimizer") == optimizer]
    if runs and names[runs[-1] + 1:]:
        skip = [str(item) for item in (cfg.pipeline.get("skip") or [])]
        OmegaConf.update(cfg, "pipeline.skip", [*skip, *names[runs[-1] + 1:]], force_add=True)


class OptimizerContract(_ComponentContract):
    """What every optimizer promises the stage runner, checked by one real pipeline run.

    ``class TestMyOpt(OptimizerContract): name = "my_opt"`` runs ``pipeline=<pipeline>
    optimizer=my_opt`` on ``tiny-random`` with the FAST settings and a small data set
    (``CONTRACT_PAIRS`` as preference pairs, their good answers as SFT examples), up to the
    optimizer's stage: the stages after it (the closing evaluate) are skipped, they check nothing
    here. An on-policy optimizer needs prompts and a preference model: ``data = ("prompts",)``,
    ``overrides = ("preference_model=rule", "preference_model.fn=mod:fn")``, or a trained one from
    a fixture through ``contract_overrides``.
    """

    kind = "optimizer"
    group = "optimizer"
    pipeline: str = "dpo"  # a pipeline whose stage uses ${optimizer.name}
    data: Sequence[str] = ("preferences",)  # the small data written for the run: preferences, sft, prompts
    produces_model: bool = True  # the stage returns a `model` artifact
    changes_weights: bool = True  # ... that differs from the policy it started from
    artifacts: Sequence[str] = ()  # other artifacts the stage returns, each a file or folder of the run

    @pytest.fixture(scope="class")
    @classmethod
    def contract_run(cls, contract_registry, tmp_path_factory, contract_overrides):
        """(run directory, composed config, registry), run once for the class's checks."""
        from alignkit.core.pipeline import run_pipeline

        registry = contract_registry
        folder = tmp_path_factory.mktemp(f"contract-{cls.name}")
        overrides = [*FAST_OVERRIDES, f"pipeline={cls.pipeline}", f"optimizer={cls.name}",
                     *write_contract_data(folder / "data", cls.data),
                     *(o.replace("{tmp}", str(folder)) for o in (*cls.overrides, *contract_overrides))]
        cfg = compose(overrides, registry)
        _skip_the_stages_after(cfg, cls.name)
        rd = run_pipeline(cfg, folder / "run", registry)
        return rd, cfg, registry

    def _stage(self, contract_run) -> str:
        _, cfg, _ = contract_run
        names = [str(s.name) for s in cfg.pipeline.stages if s.get("optimizer") == self.name]
        assert names, f"pipeline '{self.pipeline}' has no stage running optimizer '{self.name}'"
        return names[-1]

    def test_has_a_config_schema_and_a_config_file(self, contract_registry, tmp_path):
        import dataclasses

        from alignkit.core.options import build_component

        entry = contract_registry.get("optimizer", self.name)
        assert entry.config_schema is not None and dataclasses.is_dataclass(entry.config_schema), \
            "give the optimizer a dataclass config_schema so a misspelled option is an error"
        cfg = compose([f"optimizer={self.name}"], contract_registry)
        assert cfg.optimizer.name == self.name, f"optimizer/{self.name}.yaml must say name: {self.name}"
        node = {k: v for k, v in cfg.optimizer.items() if k != "trainer"}
        ctx = make_stage_context(contract_registry, tmp_path / "run", [f"optimizer={self.name}"])
        optimizer = build_component(contract_registry, "optimizer", self.name, node, ctx)
        from alignkit.core.interfaces import Optimizer

        assert isinstance(optimizer, Optimizer), "the factory must return an object with run(ctx)"

    def test_the_run_completes(self, contract_run):
        rd, _, _ = contract_run
        record = rd.summary["stages"][self._stage(contract_run)]
        assert rd.summary["status"] == "completed" and record["status"] == "completed", rd.summary

    def test_metrics_are_finite_numbers(self, contract_run):
        import json
        import math

        rd, _, _ = contract_run
        stage = self._stage(contract_run)
        final = rd.summary["stages"][stage]["metrics"]
        bad = {k: v for k, v in final.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
        assert not bad, f"non-finite or non-numeric final metrics: {bad}"
        steps = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in steps if r.get("stage") == stage and "loss" in r]
        assert losses and all(math.isfinite(v) for v in losses), "log a finite 'loss' every step (ctx.log / Engine)"

    def test_returns_its_artifacts(self, contract_run):
        rd, _, _ = contract_run
        artifacts = rd.summary["stages"][self._stage(contract_run)]["artifacts"]
        for name in self.artifacts:
            assert name in artifacts, f"the stage returned no '{name}' artifact: {artifacts}"
            assert (rd.path / artifacts[name]).exists(), f"artifact '{name}' is not in the run: {artifacts[name]}"

    def test_saves_a_trained_model(self, contract_run):
        if not self.produces_model:
            pytest.skip("the optimizer declares it produces no model")
        import torch
        from transformers import AutoModelForCausalLM

        rd, cfg, registry = contract_run
        stage = self._stage(contract_run)
        artifacts = rd.summary["stages"][stage]["artifacts"]
        assert "model" in artifacts, f"stage '{stage}' returned no 'model' artifact: {artifacts}"
        trained = AutoModelForCausalLM.from_pretrained(rd.path / artifacts["model"])
        if not self.changes_weights:
            return
        order = list(rd.summary["stages"])
        earlier = [rd.summary["stages"][s]["artifacts"].get("model") for s in order[: order.index(stage)]]
        earlier = [m for m in earlier if m]
        if earlier:
            start = AutoModelForCausalLM.from_pretrained(rd.path / earlier[-1])
        else:
            from alignkit.core.pipeline import RunContext

            start = registry.load_model(RunContext(cfg, registry, rd).model_spec(), "policy").model
        before, after = start.state_dict(), trained.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in after if k in before), \
            "the saved model has the starting weights: save the trained model (Engine.train's outcome.model)"
