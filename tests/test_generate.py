"""Generation (Chapter 6) against the oracle, Hugging Face ``transformers``: the same random GPT-2 weights in the
course model and in ``GPT2LMHeadModel``; greedy and beam search must give the same token ids as ``generate()``, and
sampling the same processed distribution at every step. Then the KV cache, streaming, stop sequences, speculative
decoding and the command line."""

import math

import pytest
import torch

from gptcourse import generate as gen
from gptcourse.beam_search import beam_search
from gptcourse.course_tokenizer import load_course_tokenizer
from gptcourse.generate import Sampling, StopChecker, generate, stream
from gptcourse.kv_cache import KVCache, cache_bytes_per_token
from gptcourse.model import GPT, GPTConfig, llama_style
from gptcourse.speculative import speculative_generate
from gptcourse.tolerances import assert_close, devices_to_test
from test_gpt2_weights import course_from, hf_gpt2

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair():
    """The same random GPT-2 (vocabulary 300, context 32) as transformers and as the course model, in float64 so
    that no argmax is decided by rounding."""
    hf = hf_gpt2(seed=3, n_positions=64).double()
    return hf, course_from(hf).double()


def prompts(vocab=300, batch=2, T=6, seed=0):
    return torch.randint(1, vocab, (batch, T), generator=torch.Generator().manual_seed(seed))


def hf_generate(hf, ids, **settings):
    return hf.generate(ids, attention_mask=torch.ones_like(ids), **settings)


# ------------------------------------------------------------------------------ token for token vs transformers


def test_greedy_matches_transformers(pair):
    hf, ours = pair
    ids = prompts()
    expected = hf_generate(hf, ids, max_new_tokens=25, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate(ours, ids, Sampling(max_new_tokens=25)), expected)
    assert torch.equal(generate(ours, ids, Sampling(max_new_tokens=25), use_cache=False), expected)


def test_greedy_with_repetition_penalty_and_end_of_text_matches_transformers(pair):
    hf, ours = pair
    ids = prompts(seed=1)
    eos = int(generate(ours, ids[0], Sampling(max_new_tokens=4))[-1])  # a token the first row will produce
    settings = Sampling(max_new_tokens=20, repetition_penalty=1.4, eos_id=eos)
    expected = hf_generate(hf, ids, max_new_tokens=20, do_sample=False, repetition_penalty=1.4, eos_token_id=eos,
                           pad_token_id=eos)
    got = generate(ours, ids, settings)
    assert torch.equal(got, expected)
    assert (got[0] == eos).any(), "the test should exercise the end-of-text rule"


@pytest.mark.parametrize("num_beams, length_penalty", [(2, 1.0), (4, 0.0), (4, 2.0), (5, -1.0)])
def test_beam_search_matches_transformers(pair, num_beams, length_penalty):
    hf, ours = pair
    for seed in range(3):
        ids = prompts(batch=1, seed=seed)[0]
        eos = int(generate(ours, ids, Sampling(max_new_tokens=3))[-1])  # likely to end some beams early
        expected = hf_generate(hf, ids[None], max_new_tokens=12, num_beams=num_beams, length_penalty=length_penalty,
                               early_stopping=False, do_sample=False, eos_token_id=eos, pad_token_id=eos)[0]
        got = beam_search(ours, ids, num_beams, 12, length_penalty, eos_id=eos)
        assert torch.equal(got, expected), f"seed {seed}"
        assert torch.equal(beam_search(ours, ids, num_beams, 12, length_penalty, eos_id=eos, use_cache=False), got)


def test_beam_search_without_end_of_text_matches_transformers(pair):
    hf, ours = pair
    ids = prompts(batch=1, seed=5)[0]
    expected = hf_generate(hf, ids[None], max_new_tokens=10, num_beams=3, do_sample=False, eos_token_id=None,
                           pad_token_id=0)[0]
    assert torch.equal(beam_search(ours, ids, 3, 10), expected)


def test_sampling_has_the_transformers_distribution_at_every_step(pair):
    hf, ours = pair
    ids = prompts(seed=2)
    settings = dict(temperature=0.7, top_k=40, top_p=0.9, min_p=0.02, repetition_penalty=1.3)
    out = hf_generate(hf, ids, max_new_tokens=8, do_sample=True, output_scores=True, return_dict_in_generate=True,
                      eos_token_id=None, pad_token_id=0, **settings)
    processors = Sampling(do_sample=True, **settings).processors()
    with torch.no_grad():
        for step, hf_scores in enumerate(out.scores):
            prefix = out.sequences[:, :ids.shape[1] + step]
            ours_scores = gen.lp.process(ours(prefix)[:, -1], prefix, processors, ids.shape[1])
            assert torch.equal(ours_scores == -math.inf, hf_scores == -math.inf), f"step {step}: tokens kept"
            kept = hf_scores != -math.inf
            assert_close(ours_scores[kept].to(hf_scores.dtype), hf_scores[kept])


def test_sampling_is_seeded_and_follows_the_processed_distribution():
    model = GPT(GPTConfig(vocab_size=6, context_length=8, d_model=16, n_layers=1, n_heads=2)).eval()
    ids = torch.tensor([1, 2])
    settings = Sampling(max_new_tokens=1, do_sample=True, temperature=0.5)
    draws = [int(generate(model, ids, settings, torch.Generator().manual_seed(s))[-1]) for s in range(3000)]
    again = [int(generate(model, ids, settings, torch.Generator().manual_seed(s))[-1]) for s in range(20)]
    assert draws[:20] == again, "the same seed must give the same token"
    with torch.no_grad():
        expected = (model(ids[None])[0, -1] / 0.5).softmax(-1)
    observed = torch.bincount(torch.tensor(draws), minlength=6) / len(draws)
    assert (observed - expected).abs().max() < 0.03


def test_frequency_and_presence_penalties_count_generated_tokens_only():
    logits, ids = torch.zeros(2, 6), torch.tensor([[1, 1, 2], [3, 4, 4]])
    chain = [gen.lp.FrequencyPresencePenalty(frequency_penalty=1.0, presence_penalty=0.5)]
    assert torch.equal(gen.lp.process(logits, ids, chain, prompt_length=3), logits), "nothing generated yet"
    got = gen.lp.process(logits, ids, chain, prompt_length=1)
    assert got[0].tolist() == [0, -1.5, -1.5, 0, 0, 0] and got[1].tolist() == [0, 0, 0, 0, -2.5, 0]
    model = GPT(GPTConfig(vocab_size=50, context_length=16, d_model=16, n_layers=1, n_heads=2)).eval()
    prompt = torch.full((6,), 7)  # a prompt that repeats one token: a penalty counting it would push 7 down
    with torch.no_grad():
        model.lm_head.weight[7] += 0.5  # ... and the model likes 7
    assert 7 in generate(model, prompt, Sampling(max_new_tokens=3, presence_penalty=5.0))[6:].tolist()
    assert 7 not in generate(model, prompt, Sampling(max_new_tokens=3, repetition_penalty=50.0))[6:].tolist()


def test_bad_settings_get_clear_errors():
    with pytest.raises(ValueError, match="temperature > 0"):
        Sampling(do_sample=True, temperature=0)
    with pytest.raises(ValueError, match="top-p must lie in"):
        Sampling(do_sample=True, top_p=1.5)
    with pytest.raises(ValueError, match="top-k needs"):
        Sampling(top_k=0)  # refused even where greedy decoding would ignore it
    assert Sampling(temperature=0).processors() == [], "greedy decoding ignores the temperature"
    with pytest.raises(ValueError, match="max_new_tokens"):
        Sampling(max_new_tokens=-1)
    model = GPT(GPTConfig(vocab_size=300, context_length=8, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(ValueError, match="non-empty torch.long"):
        generate(model, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="reads at most 8"):
        next(stream(model, load_course_tokenizer(), "a prompt that is far longer than eight tokens, surely"))


# ------------------------------------------------------------------------------ the KV cache

CONFIGS = {
    "learned": GPTConfig(vocab_size=97, context_length=48, d_model=64, n_layers=2, n_heads=4),
    "learned-sdpa": GPTConfig(vocab_size=97, context_length=48, d_model=64, n_layers=2, n_heads=4, use_sdpa=True),
    "rope-gqa": llama_style(vocab_size=97, context_length=48, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2),
    "rope-mqa-sdpa": llama_style(vocab_size=97, context_length=48, d_model=64, n_layers=2, n_heads=4, n_kv_heads=1,
                                 use_sdpa=True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_logits_equal_uncached_ones_in_chunks(name):
    torch.manual_seed(0)
    model = GPT(CONFIGS[name]).eval()
    ids = prompts(97, batch=2, T=20)
    cache = KVCache(model.config)
    with torch.no_grad():
        full = model(ids)
        pieces = [model(ids[:, a:b], cache=cache) for a, b in [(0, 7), (7, 8), (8, 13), (13, 20)]]
    assert cache.length == 20
    assert_close(torch.cat(pieces, dim=1), full)


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_generation_gives_identical_tokens(name):
    torch.manual_seed(1)
    model = GPT(CONFIGS[name]).eval()
    ids = prompts(97, batch=3, T=5)
    for settings in (Sampling(max_new_tokens=30), Sampling(max_new_tokens=30, do_sample=True, top_k=10),
                     Sampling(max_new_tokens=30, frequency_penalty=0.5, presence_penalty=0.3)):
        cached = generate(model, ids, settings, torch.Generator().manual_seed(0))
        uncached = generate(model, ids, settings, torch.Generator().manual_seed(0), use_cache=False)
        assert torch.equal(cached, uncached)


@pytest.mark.parametrize("device", devices_to_test(), ids=str)
def test_generation_runs_where_the_model_is(device):
    torch.manual_seed(5)
    model = GPT(CONFIGS["rope-mqa-sdpa"]).to(device).eval()
    ids = prompts(97, batch=2, T=5).to(device)
    settings = Sampling(max_new_tokens=12, do_sample=True, top_p=0.9, repetition_penalty=1.2)
    out = generate(model, ids, settings, torch.Generator(device=device).manual_seed(0))
    assert out.device.type == device.type and out.shape == (2, 17)
    again = generate(model, ids, settings, torch.Generator(device=device).manual_seed(0), use_cache=False)
    assert torch.equal(out, again)
    assert beam_search(model, ids[0], 3, 6).device.type == device.type


def test_generation_goes_on_past_the_context_window():
    model = GPT(CONFIGS["learned"]).eval()
    ids = prompts(97, batch=1, T=40)[0]
    out = generate(model, ids, Sampling(max_new_tokens=20))
    assert out.shape == (60,) and torch.equal(out, generate(model, ids, Sampling(max_new_tokens=20), use_cache=False))


@pytest.mark.parametrize("name", ["learned", "rope-gqa", "rope-mqa-sdpa"])
def test_cache_memory_per_token_is_the_formula(name):
    config = CONFIGS[name]
    model = GPT(config).eval()
    cache = KVCache(config)
    with torch.no_grad():
        model(prompts(97, batch=1, T=10), cache=cache)
    per_token = 2 * config.n_layers * config.kv_heads * config.d_head * 4
    assert cache_bytes_per_token(config) == per_token
    assert cache.nbytes() == 10 * per_token and cache.nbytes(filled_only=False) == 48 * per_token
    assert cache_bytes_per_token(config, torch.bfloat16) == per_token // 2


def test_cache_crop_and_reorder():
    torch.manual_seed(2)
    model = GPT(CONFIGS["rope-gqa"]).eval()
    ids = prompts(97, batch=2, T=12)
    cache = KVCache(model.config)
    with torch.no_grad():
        model(ids[:, :8], cache=cache)
        cache.crop(5)  # forget positions 5, 6, 7 ...
        cache.reorder(torch.tensor([1, 1]))  # ... and continue the second sequence twice
        got = model(ids[1:, 5:12].repeat(2, 1), cache=cache)
        expected = model(ids[1:2])[:, 5:]
    assert_close(got, expected.repeat(2, 1, 1))
    with pytest.raises(ValueError, match="crop the cache"):
        cache.crop(13)
    with pytest.raises(ValueError, match="do not fit"):
        model(ids, cache=KVCache(model.config, max_length=10))
    with pytest.raises(ValueError, match="at most 48"):
        model(ids.repeat(1, 4)[:, :40], cache=cache)


# ------------------------------------------------------------------------------ streaming and stop sequences


def test_stop_checker_holds_back_only_what_could_start_a_stop():
    checker = StopChecker(["</end>", "STOP"])
    assert checker.push("Hello <") == "Hello "  # "<" might begin "</end>"
    assert checker.push("b>") == "<b>"  # it did not
    assert checker.push(" S") == " "
    assert checker.push("TO") == ""
    assert checker.push("P and more") == "" and checker.stopped
    assert checker.push("after") == "" and checker.flush() == ""
    earliest = StopChecker(["bb", "ab"])
    assert earliest.push("xabb") == "x" and earliest.stopped, "the first stop in the text wins"
    plain = StopChecker([])
    assert plain.push("<") == "<" and plain.flush() == ""
    held = StopChecker(["END"])
    assert held.push("the E") == "the " and held.flush() == "E"


class ScriptedModel(torch.nn.Module):
    """A stand-in for a GPT that writes a fixed list of token ids, whatever the prompt."""

    def __init__(self, script, vocab_size, context_length=64):
        super().__init__()
        self.script, self.prompt_length = script, None
        self.config = GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=8, n_layers=1,
                                n_heads=1)
        self.lm_head = torch.nn.Identity()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # says which device the model is on

    def hidden_states(self, ids, cache=None):
        if cache is None or cache.length == 0:
            self.prompt_length = self.prompt_length or ids.shape[1]
        seen = ids.shape[1] + (cache.length if cache is not None else 0)
        if cache is not None:
            cache.layers[0].length += ids.shape[1]
        step = seen - self.prompt_length
        scores = torch.zeros(1, ids.shape[1], self.config.vocab_size)
        scores[0, -1, self.script[min(step, len(self.script) - 1)]] = 1.0
        return scores


def test_stream_never_splits_a_character_and_stops_across_tokens():
    tokenizer = load_course_tokenizer()
    text = "Déjà vu: 3 € <STOP> never shown"
    script = list(text.encode("utf-8"))  # one byte per token: é, à and € arrive in pieces
    model = ScriptedModel(script, tokenizer.n_vocab)
    pieces = list(stream(model, tokenizer, "x", Sampling(max_new_tokens=len(script)), stop=["<STOP>"]))
    assert "".join(pieces) == "Déjà vu: 3 € "
    assert all("\ufffd" not in piece for piece in pieces) and "é" in pieces


def test_stream_ends_at_end_of_text():
    tokenizer = load_course_tokenizer()
    eot = tokenizer.n_vocab - 1
    model = ScriptedModel([ord("h"), ord("i"), eot, ord("!")], tokenizer.n_vocab)
    assert "".join(stream(model, tokenizer, "x", Sampling(max_new_tokens=4, eos_id=eot))) == "hi"


# ------------------------------------------------------------------------------ speculative decoding


def test_speculative_greedy_is_the_targets_greedy_text():
    torch.manual_seed(3)
    target = GPT(CONFIGS["learned"]).double().eval()
    draft = GPT(GPTConfig(vocab_size=97, context_length=48, d_model=32, n_layers=1, n_heads=2)).double().eval()
    for seed in range(3):
        ids = prompts(97, batch=1, T=4, seed=seed)[0]
        for k in (1, 3, 5):
            got, stats = speculative_generate(target, draft, ids, Sampling(max_new_tokens=25), num_draft=k)
            assert torch.equal(got, generate(target, ids, Sampling(max_new_tokens=25)))
            assert stats.rounds <= 25 and 0 <= stats.acceptance_rate <= 1
    same, stats = speculative_generate(target, target, ids, Sampling(max_new_tokens=20), num_draft=4)
    assert stats.acceptance_rate == 1.0 and stats.rounds == 4, "a perfect draft: 5 tokens per target pass"


def test_speculative_sampling_has_the_targets_distribution():
    """Two sampled tokens from a 4-token vocabulary: the frequency of each of the 16 pairs over 2000 seeded runs
    against the target's exact probability, computed by enumeration. (Sampling from the draft, or always from
    the target after a rejection, moves some pair by more than 0.1.)"""
    torch.manual_seed(4)
    small = dict(vocab_size=4, context_length=16, n_layers=1)
    target = GPT(GPTConfig(d_model=16, n_heads=2, **small)).double().eval()
    draft = GPT(GPTConfig(d_model=8, n_heads=1, **small)).double().eval()
    with torch.no_grad():  # sharper distributions than a fresh model's, the draft's far from the target's
        target.lm_head.weight.mul_(4)
        draft.lm_head.weight.mul_(-4)
    ids = torch.tensor([1, 2])
    settings = Sampling(max_new_tokens=2, do_sample=True, temperature=0.8)
    with torch.no_grad():
        first = (target(ids[None])[0, -1] / 0.8).softmax(-1)
        exact = torch.stack([first[a] * (target(torch.tensor([[1, 2, a]]))[0, -1] / 0.8).softmax(-1)
                             for a in range(4)]).flatten()
    counts = torch.zeros(16)
    accepted = drafted = 0
    for seed in range(2000):
        out, stats = speculative_generate(target, draft, ids, settings, num_draft=2,
                                          generator=torch.Generator().manual_seed(seed))
        counts[4 * out[2] + out[3]] += 1
        accepted, drafted = accepted + stats.accepted, drafted + stats.drafted
    assert 0.2 < accepted / drafted < 0.95, "the test needs both acceptances and rejections"
    observed = counts / counts.sum()
    assert (observed - exact).abs().max() < 0.035, f"{observed} vs {exact}"


# ------------------------------------------------------------------------------ the command line


def test_command_streams_text_and_refuses_bad_values(monkeypatch, capsys):
    tokenizer = load_course_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.n_vocab, context_length=32, d_model=16, n_layers=1, n_heads=2))
    monkeypatch.setattr(gen, "load_model_and_tokenizer", lambda name, device=None: (model, tokenizer, None))
    assert gen.main(["Once upon a time", "--max-new-tokens", "5", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    gen.main(["Once upon a time", "--max-new-tokens", "5", "--seed", "1"])
    assert first.startswith("Once upon a time") and capsys.readouterr().out == first, "a seed repeats its text"
    for bad, message in [(["--temperature", "0"], "--greedy"), (["--top-p", "0"], "top-p must lie in"),
                         (["--top-k", "0"], "top-k needs"), (["--max-new-tokens", "-2"], "max_new_tokens")]:
        with pytest.raises(SystemExit):
            gen.main(["hi", *bad])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gen.main(["word " * 40])
    assert "reads at most 32" in capsys.readouterr().err


def test_gpt2_without_weights_on_disk_says_what_to_do(monkeypatch):
    monkeypatch.setattr("gptcourse.gpt2_weights.find_local_checkpoint", lambda name: None)
    with pytest.raises(SystemExit, match="--model course"):
        gen.load_model_and_tokenizer("gpt2")
