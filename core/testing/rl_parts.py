"""The contracts of on-policy RL's parts, pure functions called with ``options`` (no config node,
no factory): ``AdvantageEstimatorContract`` and ``PolicyLossContract``."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from alignkit.core.testing.components import _ComponentContract


class _ThreadReducer:
    """A ``BatchReducer`` over threads that stand for processes: each ``sum`` waits for every
    thread's value and returns their total, as an all-reduce would."""

    def __init__(self, parties: int) -> None:
        import threading

        self._barrier = threading.Barrier(parties, timeout=30)
        self._values: dict[int, Any] = {}

    def sum(self, value: Any) -> Any:
        import threading

        me = threading.get_ident()
        self._barrier.wait()
        self._values[me] = value.detach().clone()
        self._barrier.wait()
        total = sum(self._values[k] for k in sorted(self._values))
        self._barrier.wait()
        self._values.pop(me)
        return total.to(value.device, value.dtype)


def _right_padded_mask(lengths: Sequence[int], width: int) -> Any:
    import torch

    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()


class _RLPartContract(_ComponentContract):
    """A pure function of the RL loop: no config node, no factory; it is called with ``options``."""

    options: dict[str, Any] = {}
    """The optimizer options the part is called with (``{"gamma": 0.99}``, ...)."""

    @pytest.fixture(scope="class")
    @classmethod
    def part(cls, contract_registry) -> Any:
        """The registry's entry for ``name``."""
        available = contract_registry.components(cls.kind)
        assert cls.name in available, f"no {cls.kind} '{cls.name}'; registered: {sorted(available)}"
        return available[cls.name].entry

    def test_is_registered_with_a_description(self, part):
        assert part.description.strip(), f"{self.kind} '{self.name}' needs a one-line description"

    # what a subclass says: how to build its inputs, call the part, and what comes back
    returns: str = ""
    """The record the part returns (``AdvantageOutputs``, ``PolicyLossOutputs``)."""
    tensor: str = ""
    """That record's per-token field (``advantages``, ``per_token``)."""

    @classmethod
    def make_inputs(cls, part: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def call(part: Any, inputs: Any) -> Any:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def outputs(cls, part) -> tuple[Any, Any]:
        """(inputs, what the part returned for them), once per class."""
        inputs = cls.make_inputs(part)
        return inputs, cls.call(part, inputs)

    def test_returns_its_outputs_record(self, outputs):
        import alignkit.core.rl as rl

        assert isinstance(outputs[1], getattr(rl, self.returns)), f"{self.kind} must return a {self.returns}"

    def test_gives_one_finite_value_per_token(self, outputs):
        import torch

        inputs, out = outputs
        values = getattr(out, self.tensor)
        assert values.shape == inputs.mask.shape, \
            f"{self.tensor} is {tuple(values.shape)}, the mask {tuple(inputs.mask.shape)}: give one per token"
        assert values.is_floating_point() and bool(torch.isfinite(values).all()), f"{self.tensor} must be finite"

    def test_metrics_are_finite_floats(self, outputs):
        import math

        bad = {k: v for k, v in outputs[1].metrics.items() if not isinstance(v, float) or not math.isfinite(v)}
        assert not bad, f"metrics must be finite plain floats: {bad}"


class AdvantageEstimatorContract(_RLPartContract):
    """What every advantage estimator promises the RL loop (``alignkit.core.rl``).

    ``class TestMine(AdvantageEstimatorContract): name = "mine"`` calls the registered
    ``estimate`` on a fixed batch of ``groups`` prompts x ``group_size`` responses of uneven
    lengths (a critic's values when the entry ``needs_critic``) and checks: advantages of the
    mask's shape, finite, 0 off the mask, blind to what lies off the mask, without a gradient;
    reordering whole groups reorders the advantages; two processes (threads sharing a reducer)
    holding half the groups each compute what one process does on all of them.
    """

    kind = "advantage_estimator"
    returns = "AdvantageOutputs"
    tensor = "advantages"
    group_size: int = 4
    groups: int = 2
    width: int = 6
    tolerance: float = 1e-5

    @classmethod
    def make_inputs(cls, part: Any, seed: int = 0, off_mask: float = 0.0, grad: bool = False) -> Any:
        """The batch the checks use; ``off_mask`` is written where the mask is 0."""
        import torch

        from alignkit.core.rl import AdvantageInputs

        gen = torch.Generator().manual_seed(seed)
        rows = cls.groups * cls.group_size
        lengths = [1 + (5 * i) % cls.width for i in range(rows)]
        mask = _right_padded_mask(lengths, cls.width)
        scores = torch.randn(rows, generator=gen)
        kl_penalty = 0.01 * torch.rand(rows, cls.width, generator=gen) * mask + off_mask * (1 - mask)
        values = torch.randn(rows, cls.width, generator=gen) * mask + off_mask * (1 - mask)
        if grad:
            scores, kl_penalty, values = (t.requires_grad_() for t in (scores, kl_penalty, values))
        return AdvantageInputs(scores=scores, mask=mask, kl_penalty=kl_penalty, group_size=cls.group_size,
                               values=values if part.needs_critic else None, options=dict(cls.options))

    @staticmethod
    def call(part: Any, inputs: Any) -> Any:
        return part.estimate(inputs)

    def test_advantages_are_zero_off_the_mask(self, outputs):
        inputs, out = outputs
        assert bool((out.advantages[inputs.mask == 0] == 0).all()), "advantages must be 0 where the mask is 0"

    def test_what_lies_off_the_mask_changes_nothing(self, part, outputs):
        import torch

        inputs, out = outputs
        noisy = part.estimate(self.make_inputs(part, off_mask=7.0))
        on = inputs.mask.bool()
        assert torch.allclose(noisy.advantages[on], out.advantages[on], atol=self.tolerance), \
            "values or KL penalties off the response mask changed the advantages"

    def test_no_gradient_flows_through_the_advantages(self, part):
        out = part.estimate(self.make_inputs(part, grad=True))
        assert not out.advantages.requires_grad, "advantages must be constants for the policy loss (detach them)"
        assert out.returns is None or not out.returns.requires_grad, "returns must be constants (detach them)"

    def test_a_critic_estimator_gives_returns(self, part, outputs):
        if not part.needs_critic:
            assert self.make_inputs(part).values is None  # it runs without values
            return
        inputs, out = outputs
        assert out.returns is not None and out.returns.shape == inputs.mask.shape, \
            "an estimator that needs_critic returns the critic's targets, one per token"

    def test_reordering_the_groups_reorders_the_advantages(self, part, outputs):
        import dataclasses

        import torch

        inputs, out = outputs
        order = torch.arange(self.groups).flip(0)
        rows = (order[:, None] * self.group_size + torch.arange(self.group_size)).reshape(-1)
        swapped = dataclasses.replace(
            inputs, scores=inputs.scores[rows], mask=inputs.mask[rows], kl_penalty=inputs.kl_penalty[rows],
            values=inputs.values[rows] if inputs.values is not None else None)
        assert torch.allclose(part.estimate(swapped).advantages, out.advantages[rows], atol=self.tolerance), \
            "an estimator must treat each group alike, wherever it sits in the batch"

    def test_two_processes_compute_what_one_does(self, part, outputs):
        import dataclasses
        from concurrent.futures import ThreadPoolExecutor

        import torch

        if self.groups < 2:
            pytest.skip("needs at least two groups to split")
        inputs, out = outputs
        half = (self.groups // 2) * self.group_size
        reducer = _ThreadReducer(2)

        def shard(rows: slice) -> Any:
            return part.estimate(dataclasses.replace(
                inputs, scores=inputs.scores[rows], mask=inputs.mask[rows], kl_penalty=inputs.kl_penalty[rows],
                values=inputs.values[rows] if inputs.values is not None else None, reducer=reducer))

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(shard, (slice(0, half), slice(half, None)))
        joined = torch.cat([first.advantages, second.advantages])
        assert torch.allclose(joined, out.advantages, atol=self.tolerance), \
            "split over processes, the advantages differ: sum batch-wide statistics through inputs.reducer"


class PolicyLossContract(_RLPartContract):
    """What every policy loss promises the RL loop (``alignkit.core.rl``).

    ``class TestMine(PolicyLossContract): name = "mine"`` calls the registered ``loss`` on a
    fixed micro-batch (pairs of chosen/rejected rows for a ``pairwise`` loss) and checks:
    per-token terms of the mask's shape, finite; terms and gradients off the mask count for
    nothing; the gradient reaches the policy's log-probs and nothing else (advantages, old and
    reference log-probs are constants); metrics are finite floats. ``gradient_is_minus_advantage``
    (default on, off for pairwise losses): on-policy (new = old log-probs, no KL), each token's
    gradient is ``-A_t``, the policy-gradient theorem.
    """

    kind = "policy_loss"
    returns = "PolicyLossOutputs"
    tensor = "per_token"
    rows: int = 4
    width: int = 5
    gradient_is_minus_advantage: bool = True

    @classmethod
    def make_inputs(cls, part: Any, seed: int = 0, off_mask: float = 0.0, on_policy: bool = False,
                    with_reference: bool = True) -> Any:
        """The micro-batch the checks use (every tensor a leaf that may take a gradient)."""
        import torch

        from alignkit.core.rl import PolicyLossInputs

        gen = torch.Generator().manual_seed(seed)
        lengths = [1 + (2 * i + 2) % cls.width for i in range(cls.rows)]
        mask = _right_padded_mask(lengths, cls.width)
        old = -1.0 - torch.rand(cls.rows, cls.width, generator=gen)
        new = old if on_policy else old + 0.3 * torch.randn(cls.rows, cls.width, generator=gen)
        ref = old + 0.1 * torch.randn(cls.rows, cls.width, generator=gen)
        if part.pairwise:
            advantages = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(cls.rows)])[:, None] * mask
        else:
            advantages = torch.randn(cls.rows, cls.width, generator=gen) * mask

        def leaf(t: torch.Tensor) -> torch.Tensor:
            return (t * mask + off_mask * (1 - mask)).clone().requires_grad_()

        return PolicyLossInputs(logprobs=leaf(new), old_logprobs=leaf(old), advantages=leaf(advantages), mask=mask,
                                ref_logprobs=leaf(ref) if with_reference else None, options=dict(cls.options))

    @staticmethod
    def _total(out: Any, inputs: Any) -> Any:
        return (out.per_token * inputs.mask).sum()

    @staticmethod
    def call(part: Any, inputs: Any) -> Any:
        return part.loss(inputs)

    def test_the_gradient_reaches_only_the_policy_log_probs(self, part):
        inputs = self.make_inputs(part)
        self._total(part.loss(inputs), inputs).backward()
        assert inputs.logprobs.grad is not None and bool((inputs.logprobs.grad != 0).any()), \
            "the loss must depend on the policy's log-probs"
        for field in ("old_logprobs", "advantages", "ref_logprobs"):
            grad = getattr(inputs, field).grad
            assert grad is None or bool((grad == 0).all()), f"a gradient leaks into {field}: detach it"

    def test_what_lies_off_the_mask_counts_for_nothing(self, part):
        import torch

        clean, noisy = self.make_inputs(part), self.make_inputs(part, off_mask=-3.0)
        clean_total, noisy_total = self._total(part.loss(clean), clean), self._total(part.loss(noisy), noisy)
        noisy_total.backward()
        assert torch.allclose(clean_total, noisy_total, atol=1e-5), "log-probs or advantages off the mask changed the loss"
        assert bool((noisy.logprobs.grad[noisy.mask == 0] == 0).all()), "the loss has a gradient off the mask"

    def test_it_runs_without_a_reference_unless_it_needs_one(self, part):
        inputs = self.make_inputs(part, with_reference=False)
        try:
            out = part.loss(inputs)
        except ValueError as exc:  # a loss that needs the reference says so
            assert "reference" in str(exc), f"without a reference, say that one is needed: {exc}"
            return
        assert out.per_token.shape == inputs.mask.shape

    def test_on_policy_the_gradient_is_minus_the_advantage(self, part):
        import torch

        if part.pairwise or not self.gradient_is_minus_advantage:
            pytest.skip("not a per-token policy gradient")
        inputs = self.make_inputs(part, on_policy=True, with_reference=False)
        self._total(part.loss(inputs), inputs).backward()
        expected = -inputs.advantages.detach() * inputs.mask
        assert torch.allclose(inputs.logprobs.grad * inputs.mask, expected, atol=1e-5), \
            "at new = old log-probs each token's gradient should be -advantage (the policy-gradient theorem)"
