"""gptcourse.logits_processors against Hugging Face transformers' processors (the oracle), OpenAI's closed form for
the additive penalties, hand examples at the edges, and sampling."""

import math

import pytest
import torch

from gptcourse.logits_processors import (FrequencyPresencePenalty, MinP, RepetitionPenalty, Temperature, TopK, TopP,
                                         greedy_next, process, sample_next)

hf = pytest.importorskip("transformers.generation.logits_process")

BATCH, V = 3, 50


def _scores(seed=0):
    # Scaled normal scores: spread out enough that top-p and min-p keep a handful of tokens, and float32 values
    # drawn at random have no exact ties.
    return 3 * torch.randn(BATCH, V, generator=torch.Generator().manual_seed(seed))


def _ids(seed=0, length=12):
    # Few distinct ids, so that several tokens repeat and the counts differ.
    return torch.randint(0, 10, (BATCH, length), generator=torch.Generator().manual_seed(seed)) * 3


def _assert_same_filtering(ours, theirs):
    """The same tokens removed (-inf) and the same values kept."""
    assert torch.equal(ours == -math.inf, theirs == -math.inf)
    kept = ours != -math.inf
    torch.testing.assert_close(ours[kept], theirs[kept])


def _assert_away_from_cutoff(values, cutoff, margin=1e-4):
    # Where a value sits on the cut-off, float rounding decides; the random data must keep clear of it.
    assert (values - cutoff).abs().min() > margin


# ------------------------------------------------------------------------------ against transformers


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_matches_transformers(temperature):
    scores, ids = _scores(), _ids()
    torch.testing.assert_close(Temperature(temperature)(scores), hf.TemperatureLogitsWarper(temperature)(ids, scores))


@pytest.mark.parametrize("k", [1, 5, 49, 50, 80])
def test_top_k_matches_transformers(k):
    scores, ids = _scores(1), _ids()
    ours = TopK(k)(scores)
    _assert_same_filtering(ours, hf.TopKLogitsWarper(k)(ids, scores))
    assert ((ours != -math.inf).sum(-1) == min(k, V)).all()


@pytest.mark.parametrize("p", [0.05, 0.5, 0.8, 0.95, 1.0])
def test_top_p_matches_transformers(p):
    scores, ids = _scores(2), _ids()
    probs = scores.softmax(-1).sort(-1, descending=True).values
    if p < 1:
        _assert_away_from_cutoff(probs.cumsum(-1), p)
    _assert_same_filtering(TopP(p)(scores), hf.TopPLogitsWarper(p)(ids, scores))


@pytest.mark.parametrize("min_p", [0.0, 0.05, 0.3, 0.9, 1.0])
def test_min_p_matches_transformers(min_p):
    scores, ids = _scores(3), _ids()
    probs = scores.softmax(-1)
    if 0 < min_p < 1:
        _assert_away_from_cutoff(probs / probs.amax(-1, keepdim=True), min_p, margin=1e-5)
    _assert_same_filtering(MinP(min_p)(scores), hf.MinPLogitsWarper(min_p)(ids, scores))


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 3.0])
def test_repetition_penalty_matches_transformers(penalty):
    scores, ids = _scores(4), _ids(4)
    torch.testing.assert_close(RepetitionPenalty(penalty)(scores, ids),
                               hf.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores))


def test_repetition_penalty_on_one_sequence_and_each_token_once():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    ids = torch.tensor([0, 0, 0, 1])  # token 0 three times: still divided once
    expected = torch.tensor([1.0, -4.0, 1.0, 0.5])
    torch.testing.assert_close(RepetitionPenalty(2.0)(logits, ids), expected)
    torch.testing.assert_close(hf.RepetitionPenaltyLogitsProcessor(2.0)(ids[None], logits[None])[0], expected)


@pytest.mark.parametrize("frequency,presence", [(0.0, 0.0), (0.7, 0.0), (0.0, 1.5), (0.4, -0.6)])
def test_frequency_presence_penalty_matches_closed_form(frequency, presence):
    scores, ids = _scores(5), _ids(5)
    expected = scores.clone()
    for row in range(BATCH):
        for token in range(V):
            count = int((ids[row] == token).sum())
            expected[row, token] -= count * frequency + (count > 0) * presence
    torch.testing.assert_close(FrequencyPresencePenalty(frequency, presence)(scores, ids), expected)


# ------------------------------------------------------------------------------ hand examples and edges


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    # 0.5 < 0.6, so 0.3 is needed to reach p: two tokens kept, in our rule and in transformers'.
    assert (TopP(0.6)(logits) != -math.inf).tolist() == [True, True, False]
    assert (hf.TopPLogitsWarper(0.6)(None, logits[None])[0] != -math.inf).tolist() == [True, True, False]
    # Even a tiny p keeps the most likely token.
    assert (TopP(1e-6)(logits) != -math.inf).tolist() == [True, False, False]


def test_top_p_tie_at_the_cutoff_keeps_the_lower_id():
    logits = torch.tensor([0.0, 1.0, 1.0, -1.0])  # tokens 1 and 2 tie, each with probability ~0.42 < p
    assert (TopP(0.3)(logits) != -math.inf).tolist() == [False, True, False, False]


def test_top_k_keeps_every_token_tied_with_the_kth():
    logits = torch.tensor([3.0, 1.0, 1.0, 0.0])
    assert (TopK(2)(logits) != -math.inf).tolist() == [True, True, True, False]


def test_min_p_keeps_the_most_likely_token():
    logits = torch.tensor([2.0, 0.0, -5.0])
    assert (MinP(1.0)(logits) != -math.inf).tolist() == [True, False, False]
    assert (MinP(0.1)(logits) != -math.inf).tolist() == [True, True, False]  # e^-2 = 0.135 >= 0.1, e^-7 is not


def test_inputs_are_not_modified():
    scores, ids = _scores(6), _ids(6)
    scores_before, ids_before = scores.clone(), ids.clone()
    processors = [RepetitionPenalty(1.5), FrequencyPresencePenalty(0.5, 0.5), Temperature(0.7), TopK(20), TopP(0.9),
                  MinP(0.05)]
    for processor in processors:
        out = processor(scores, ids)
        assert out.data_ptr() != scores.data_ptr()
    # p = 1 returns everything, but still as a new tensor.
    assert TopP(1.0)(scores).data_ptr() != scores.data_ptr()
    process(scores, ids, processors)
    assert torch.equal(scores, scores_before) and torch.equal(ids, ids_before)


def test_process_applies_in_order():
    scores, ids = _scores(7), _ids(7)
    processors = [RepetitionPenalty(1.2), Temperature(0.8), TopK(10), TopP(0.9)]
    expected = scores
    for processor in processors:
        expected = processor(expected, ids)
    assert torch.equal(process(scores, ids, processors), expected)
    assert torch.equal(process(scores, ids, []), scores)


@pytest.mark.parametrize("make,message", [
    (lambda: Temperature(0), "temperature must lie in"),
    (lambda: Temperature(-1.0), "temperature must lie in"),
    (lambda: Temperature(float("nan")), "temperature must be a number"),
    (lambda: TopK(0), "k >= 1"),
    (lambda: TopK(2.5), "integer k"),
    (lambda: TopK(True), "integer k"),
    (lambda: TopP(0.0), r"top-p must lie in \(0.0, 1.0\]"),
    (lambda: TopP(1.5), "top-p must lie in"),
    (lambda: MinP(-0.1), r"min-p must lie in \[0.0, 1.0\]"),
    (lambda: MinP(2), "min-p must lie in"),
    (lambda: RepetitionPenalty(0.0), "repetition penalty must lie in"),
    (lambda: FrequencyPresencePenalty(float("inf")), "frequency penalty must lie in"),
    (lambda: FrequencyPresencePenalty(0.0, "1"), "presence penalty must be a number"),
])
def test_bad_settings_raise_a_helpful_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_tensors_raise_a_helpful_error():
    scores = _scores()
    with pytest.raises(ValueError, match="float tensor"):
        TopK(2)(torch.arange(5))
    with pytest.raises(ValueError, match=r"shape \(V,\) or \(batch, V\)"):
        Temperature(1.0)(scores[None])
    with pytest.raises(ValueError, match="needs input_ids"):
        RepetitionPenalty(1.2)(scores, None)
    with pytest.raises(ValueError, match="do not match logits"):
        FrequencyPresencePenalty(0.1)(scores, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 50\)"):
        RepetitionPenalty(1.2)(scores, torch.full((BATCH, 2), V))
    with pytest.raises(ValueError, match="every token was filtered out"):
        sample_next(torch.full((4,), -math.inf))


# ------------------------------------------------------------------------------ choosing the next token


def test_sampling_is_reproducible_and_never_picks_a_filtered_token():
    logits = process(_scores(8), None, [Temperature(1.5), TopK(7), TopP(0.9)])
    draws = torch.stack([sample_next(logits, torch.Generator().manual_seed(seed)) for seed in range(200)])
    again = torch.stack([sample_next(logits, torch.Generator().manual_seed(seed)) for seed in range(200)])
    assert draws.shape == (200, BATCH) and torch.equal(draws, again)
    allowed = logits != -math.inf
    assert all(allowed[row, draws[:, row]].all() for row in range(BATCH))
    assert len(draws[:, 0].unique()) > 1  # it really samples


def test_greedy_and_one_dimensional_sampling():
    logits = torch.tensor([0.1, 2.0, 2.0, -1.0])
    assert greedy_next(logits).item() == 1  # ties go to the lowest id
    assert torch.equal(greedy_next(_scores()), _scores().argmax(-1))
    token = sample_next(TopK(1)(torch.tensor([0.1, 2.0, 1.9, -1.0])), torch.Generator().manual_seed(0))
    assert token.shape == () and token.item() == 1
