"""The OpenAI-compatible judge against a real HTTP server process on 127.0.0.1 (chat_server.py)."""

import time

import pytest

from alignkit.plugins.feedback.judgement import FeedbackError

P = [{"role": "user", "content": "Say something."}]
SHORT, LONG = "Fine.", "Fine, and here is a much longer reply that goes on."


@pytest.fixture
def http_judge(stage_ctx, chat_server, tmp_path):
    base, stats = chat_server

    def _make(mode, *extra, cache=None):
        return stage_ctx("feedback=constitution", "feedback.backend=openai", f"feedback.base_url={base}/{mode}/v1",
                         "feedback.model=test-judge", f"feedback.cache_dir={cache or tmp_path / 'cache'}",
                         "feedback.backoff=0.01", *extra).feedback()

    return _make


def test_soft_labels_from_returned_logprobs_in_both_orders(http_judge, chat_server):
    _, stats = chat_server
    before = stats().get("short", 0)
    got = http_judge("short").judge([P, P], [SHORT, LONG], [LONG, SHORT])
    assert [j.preferred for j in got] == ["a", "b"]
    assert got[0].probability == pytest.approx(0.8) and got[1].probability == pytest.approx(0.2)
    assert got[0].orders == pytest.approx((0.8, 0.8)) and got[0].position_consistent
    assert got[0].annotator == "openai:test-judge" and got[0].principle
    assert stats()["short"] - before == 4, "two pairs, each judged in both orders"


def test_parsed_answer_when_the_server_returns_no_logprobs(http_judge):
    got = http_judge("text").judge([P], [SHORT], [LONG])
    assert got[0].preferred == "a" and got[0].probability == 1.0


def test_position_bias_cancels_to_a_tie_and_is_reported(http_judge):
    got = http_judge("biased", "feedback.cache=false").judge([P, P], [SHORT, LONG], [LONG, SHORT])
    assert all(j.preferred == "tie" and j.probability == pytest.approx(0.5) for j in got)
    assert all(j.position_consistent is False for j in got)


def test_a_server_that_times_out_is_a_clear_error(http_judge):
    provider = http_judge("slow", "feedback.timeout=0.5", "feedback.retries=1", "feedback.cache=false")
    started = time.time()
    with pytest.raises(FeedbackError, match=r"failed after 2 attempt\(s\): no answer within 0.5 s"):
        provider.judge([P], [SHORT], [LONG])
    assert time.time() - started < 2.9, "gave up after its retries, not after the server's 3 s"


def test_a_server_that_returns_garbage_is_a_clear_error(http_judge):
    with pytest.raises(FeedbackError, match=r"not JSON: '<html><body>502 upstream hiccup"):
        http_judge("garbage").judge([P], [SHORT], [LONG])


def test_judgements_answered_before_a_failure_are_kept(http_judge, chat_server, tmp_path):
    _, stats = chat_server
    prompts = [[{"role": "user", "content": f"Question {i}"}] for i in range(5)]
    a = [SHORT + str(i) for i in range(5)]
    b = [LONG + str(i) for i in range(5)]
    cache = tmp_path / "shared-cache"
    flaky = http_judge("flaky", "feedback.concurrency=1", cache=cache)
    with pytest.raises(FeedbackError, match="kept in the cache|not JSON"):
        flaky.judge(prompts, a, b)  # the server breaks after 4 requests: two pairs answered
    assert len(flaky.cache) == 2, "the two pairs answered before the failure are on disk"
    before = stats().get("short", 0)
    healthy = http_judge("short", "feedback.concurrency=1", cache=cache)  # same model name: same cache key
    got = healthy.judge(prompts, a, b)
    assert healthy.hits == 2 and stats()["short"] - before == 2 * 3, "only the three missing pairs were asked"
    assert all(j.preferred == "a" for j in got)


def test_a_tiny_model_served_over_http(http_judge, chat_server):
    provider = http_judge("tiny", "feedback.cache=false", "feedback.critique_max_new_tokens=4",
                          "feedback.revision_max_new_tokens=4")
    got = provider.judge([P, P], [SHORT, LONG], [LONG, SHORT])
    for j in got:
        assert 0.0 < j.probability < 1.0 and j.orders is not None
    assert got[1].probability == pytest.approx(1.0 - got[0].probability, abs=1e-5)
    principle = provider.constitution.principles[0]
    critiques = provider.critique([P], [SHORT], [principle])
    assert provider.revise([P], [SHORT], critiques, [principle])[0]
