"""``core.rl.aggregate``: the four ways per-token terms become one loss, by hand, split over
micro-batches, and against TRL 1.16's ``loss_type`` grpo, bnpo, dr_grpo and dapo."""

import pytest
import torch

from alignkit.core.rl import AGGREGATIONS, PolicyLossInputs, aggregate
from alignkit.plugins.rl.policy_losses import ppo_clip

PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(("mode", "numerator", "denominator"), [
    ("token_mean", 7.0, 3.0),  # (1 + 2 + 4) / 3 response tokens
    ("sequence_mean", 5.5, 2.0),  # row means (1 + 2) / 2 = 1.5 and 4 / 1 = 4, summed 5.5, over 2 rows
    ("sequence_sum_token_mean", 7.0, 2.0),  # row sums 3 and 4, over 2 rows
    ("constant", 7.0, 8.0),  # the token sum over 2 rows x 4 max new tokens
])
def test_each_aggregation_by_hand(mode, numerator, denominator):
    got_numerator, got_denominator = aggregate(PER_TOKEN, MASK, mode, max_new_tokens=4)
    assert float(got_numerator) == numerator and got_denominator == denominator


def test_an_unknown_aggregation_names_the_choices():
    with pytest.raises(ValueError, match="loss aggregation must be one of token_mean, sequence_mean, "
                                         "sequence_sum_token_mean, constant, not 'mean'"):
        aggregate(PER_TOKEN, MASK, "mean", 4)


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_micro_batches_add_up_to_the_whole_batch(mode):
    torch.manual_seed(0)
    per_token = torch.randn(6, 5)
    mask = (torch.arange(5)[None] < torch.tensor([5, 1, 3, 4, 2, 5])[:, None]).float()
    whole = aggregate(per_token, mask, mode, 8)
    parts = [aggregate(per_token[rows], mask[rows], mode, 8) for rows in (slice(0, 1), slice(1, 4), slice(4, 6))]
    total = sum(n for n, _ in parts) / sum(d for _, d in parts)
    torch.testing.assert_close(total, whole[0] / whole[1])


@pytest.mark.parametrize(("mode", "loss_type"), [
    ("sequence_mean", "grpo"), ("token_mean", "bnpo"), ("constant", "dr_grpo"), ("token_mean", "dapo")])
def test_aggregations_against_trl(trl_grpo_loss, random_batch, mode, loss_type):
    # ppo_clip's terms (with the k3 KL in the loss) aggregated our way equal TRL's loss_type, value and gradient
    b = random_batch(3, [6, 1, 4, 3], 6)
    expected, _ = trl_grpo_loss(loss_type, b.trl_new, b.old, b.advantages, b.mask, ref_logprobs=b.ref, beta=0.04,
                                max_completion_length=9)
    out = ppo_clip(PolicyLossInputs(b.new, b.old, b.advantages[:, None] * b.mask, b.mask, b.ref,
                                    {"cliprange": 0.2, "kl_in_loss": True, "kl_coef": 0.04}))
    numerator, denominator = aggregate(out.per_token, b.mask, mode, max_new_tokens=9)
    loss = numerator / denominator
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    loss.backward(), expected.backward()
    torch.testing.assert_close(b.new.grad, b.trl_new.grad, atol=1e-6, rtol=0)
