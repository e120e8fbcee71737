"""The sampling progress bar and its totals line; sample_responses reporting through it."""

import logging

import pytest
import torch

from alignkit.core.progress import SamplingProgress


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_totals_and_rates_come_from_the_counts_and_the_clock(caplog):
    clock = FakeClock(100.0)
    caplog.set_level(logging.INFO, logger="alignkit")
    with SamplingProgress("label: sampling train", 8, False, clock=clock) as bar:
        clock.now = 101.0
        bar.update(3, 30)
        # 3 samples and 30 tokens after 1 s
        assert (bar.samples_per_second, bar.tokens_per_second) == (3.0, 30.0)
        clock.now = 104.0
        bar.update(5, 50)
    clock.now = 999.0  # after the exit the time stays that of the exit
    # 8 samples, 80 tokens in 104 - 100 = 4 s: 8 / 4 = 2 samples/s, 80 / 4 = 20 tokens/s
    assert (bar.samples, bar.tokens, bar.seconds) == (8, 80, 4.0)
    assert (bar.samples_per_second, bar.tokens_per_second) == (2.0, 20.0)
    assert [r.getMessage() for r in caplog.records] == [
        "label: sampling train: 8 samples, 80 new tokens in 4.0 s (2.00 samples/s, 20.0 tokens/s)"]


def test_nothing_sampled_logs_nothing_and_a_zero_time_gives_zero_rates(caplog):
    caplog.set_level(logging.DEBUG, logger="alignkit")
    with SamplingProgress("evaluate: policy", 4, False, clock=FakeClock()) as bar:
        pass
    assert (bar.samples_per_second, bar.tokens_per_second) == (0.0, 0.0)
    assert caplog.records == []


def test_the_bar_shows_samples_tokens_per_second_and_the_total(capsys):
    clock = FakeClock(0.0)
    with SamplingProgress("best_of_n: train", 10, True, clock=clock) as bar:
        clock.now = 2.0
        bar.update(4, 64)  # 64 tokens / 2 s = 32 tok/s
    err = capsys.readouterr().err
    assert "best_of_n: train" in err and "4/10" in err and "32.0 tok/s" in err and "sample" in err


def test_a_disabled_bar_writes_nothing(capsys):
    with SamplingProgress("rollout", 10, False) as bar:
        bar.update(10, 100)
    assert capsys.readouterr().err == ""


PROMPTS = [[{"role": "user", "content": f"Say something about {w}."}] for w in ("cats", "rain", "maps", "tea", "ink")]


def test_sample_responses_reports_each_batch_and_samples_the_same(tiny_model, caplog, capsys):
    from alignkit.core.lm import sample_responses

    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    caplog.set_level(logging.INFO, logger="alignkit")
    torch.manual_seed(7)
    plain = sample_responses(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2, seed=3)
    after_plain = torch.rand(1)
    torch.manual_seed(7)
    shown = sample_responses(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2, seed=3,
                             progress="evaluate: policy", show_progress=True)
    assert torch.equal(torch.rand(1), after_plain)  # the same random state afterwards
    assert [(e.input_ids, t) for e, t in shown] == [(e.input_ids, t) for e, t in plain]
    err = capsys.readouterr().err
    assert "evaluate: policy" in err and "5/5" in err and "tok/s" in err
    tokens = sum(e.num_scored for e, _ in shown)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluate: policy")]
    assert line.startswith(f"evaluate: policy: 5 samples, {tokens} new tokens in ")


def test_one_bar_counts_several_calls(tiny_model):
    from alignkit.core.lm import sample_responses

    with SamplingProgress("label: sampling train", 10, False) as bar:
        first = sample_responses(tiny_model.model, tiny_model.tokenizer, PROMPTS, max_new_tokens=4, batch_size=3,
                                 seed=0, progress=bar)
        assert bar.samples == 5  # batches of 3 and 2
        second = sample_responses(tiny_model.model, tiny_model.tokenizer, PROMPTS, max_new_tokens=4, batch_size=3,
                                  seed=1, progress=bar)
    assert bar.samples == 10
    assert bar.tokens == sum(e.num_scored for e, _ in first + second)


@pytest.mark.parametrize("unit", ["task", "gen"])
def test_the_totals_line_names_the_unit(unit, caplog):
    clock = FakeClock(0.0)
    caplog.set_level(logging.INFO, logger="alignkit")
    with SamplingProgress("x", None, False, unit=unit, clock=clock) as bar:
        clock.now = 0.5
        bar.update(1, 0)
    # 1 / 0.5 s = 2 per second
    assert caplog.records[0].getMessage() == f"x: 1 {unit}s, 0 new tokens in 0.5 s (2.00 {unit}s/s, 0.0 tokens/s)"
