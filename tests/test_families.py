"""gptcourse.families: who may attend to whom in the three families, BERT's masking rule, and the toy translation.

The decoder block is compared with an independent oracle, PyTorch's ``nn.TransformerDecoderLayer`` (pre-norm,
holding our weights), in float64; the rest checks the defining properties: an encoder is bidirectional and ignores
padding, a decoder is causal in the target and reads the source through cross-attention.
"""

import pytest
import torch
import torch.nn.functional as F

from gptcourse.attention import MultiHeadAttention, causal_mask
from gptcourse.families import (BOS, IGNORE_INDEX, PAD, DecoderBlock, EncoderDecoder, EncoderOnly, exact_match,
                                mask_tokens, padding_mask_of, reverse_task, to_text, toy_config, train_reverse,
                                translate)
from gptcourse.model import GPT, FeedForward
from gptcourse.tolerances import assert_close, devices_to_test

DTYPE = torch.float64


def small_config(**overrides):
    return toy_config(**({"vocab_size": 20, "context_length": 12, "d_model": 32, "d_ff": 64} | overrides))


def build(cls, seed=0, device="cpu", **overrides):
    torch.manual_seed(seed)
    return cls(small_config(**overrides)).to(device=device, dtype=DTYPE).eval()


def ids(*rows, device="cpu"):
    return torch.tensor(rows, device=device)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread (and do not fight other processes for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- encoder-only

def test_encoder_only_shapes():
    model = build(EncoderOnly)
    x = ids([2, 3, 4, 5, 6], [7, 8, 9, 10, 11])
    assert model(x).shape == (2, 5, 32)
    assert model.mlm_logits(x).shape == (2, 5, 20)
    assert model.classify(x).shape == (2, 2)
    assert model.mlm_head.weight is model.encoder.embed.token_embedding.weight  # tied, like GPT-2
    assert not any(block.attn.causal for block in model.encoder.blocks)


@pytest.mark.parametrize("device", devices_to_test())
def test_encoder_is_bidirectional_and_gpt_is_not(device):
    encoder, gpt = build(EncoderOnly, device=device), build(GPT, device=device)
    a, b = ids([2, 3, 4, 5, 6], device=device), ids([2, 3, 4, 5, 9], device=device)  # only the last token differs
    enc_a, enc_b = encoder(a), encoder(b)
    assert (enc_a[0, :4] - enc_b[0, :4]).abs().amax(dim=-1).min() > 1e-6, "every earlier position must see the change"
    assert_close(gpt.hidden_states(a)[0, :4], gpt.hidden_states(b)[0, :4])  # a causal model cannot look ahead


@pytest.mark.parametrize("device", devices_to_test())
def test_padding_does_not_change_the_real_tokens(device):
    model = build(EncoderOnly, device=device)
    short = ids([2, 3, 4], device=device)
    padded = ids([2, 3, 4, PAD, PAD], [5, 6, 7, 8, 9], device=device)
    out = model(padded, mask=padding_mask_of(padded, PAD))
    assert_close(out[:1, :3], model(short))
    assert_close(out[1:], model(padded[1:]))  # the unpadded row is untouched by the other row's mask
    unmasked = model(padded)
    assert not torch.allclose(unmasked[:1, :3], model(short)), "without the mask, padding leaks into real tokens"


def test_padding_mask_of():
    mask = padding_mask_of(ids([2, 3, PAD], [4, PAD, PAD]), PAD)
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_mask_tokens_follows_the_80_10_10_rule():
    vocab_size, mask_id, cls_id = 1000, 1, 2
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(3, vocab_size, (400, 500), generator=generator)
    x[:, 0] = cls_id
    inputs, labels = mask_tokens(x, mask_id, vocab_size, special_ids=(cls_id,),
                                 generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    assert inputs.shape == labels.shape == x.shape
    assert not chosen[:, 0].any() and (inputs[:, 0] == cls_id).all(), "special tokens are never chosen"
    assert (labels[chosen] == x[chosen]).all(), "labels hold the original tokens"
    assert (inputs[~chosen] == x[~chosen]).all(), "tokens that are not chosen stay as they are"
    real = x[:, 1:].numel()
    assert abs(chosen.sum().item() / real - 0.15) < 0.005
    n = chosen.sum().item()
    masked = (inputs[chosen] == mask_id).sum().item() / n
    kept = (inputs[chosen] == x[chosen]).sum().item() / n
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    again, _ = mask_tokens(x, mask_id, vocab_size, special_ids=(cls_id,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, inputs), "the same seed gives the same masking"


def test_mask_tokens_loss_only_on_chosen_positions():
    model = build(EncoderOnly)
    x = ids([2, 3, 4, 5, 6, 7, 8, 9])
    inputs, labels = mask_tokens(x, 1, 20, p=0.5, generator=torch.Generator().manual_seed(0))
    logits = model.mlm_logits(inputs)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())  # ignore_index = IGNORE_INDEX by default
    chosen = labels.flatten() != IGNORE_INDEX
    assert 0 < chosen.sum() < len(chosen)
    assert_close(loss, F.cross_entropy(logits.flatten(0, 1)[chosen], labels.flatten()[chosen]))


# ----------------------------------------------------------------------------------------------- encoder-decoder

def test_decoder_block_reuses_the_course_parts():
    block = DecoderBlock(small_config())
    assert isinstance(block.self_attn, MultiHeadAttention) and isinstance(block.cross_attn, MultiHeadAttention)
    assert isinstance(block.ffn, FeedForward)
    assert block.self_attn.causal and not block.cross_attn.causal


@pytest.mark.parametrize("device", devices_to_test())
def test_decoder_block_matches_torch_transformer_decoder_layer(device):
    torch.manual_seed(0)
    config = small_config()
    ours = DecoderBlock(config).to(device=device, dtype=DTYPE).eval()
    theirs = torch.nn.TransformerDecoderLayer(config.d_model, config.n_heads, config.ffn_dim, dropout=0.0,
                                              activation=lambda t: F.gelu(t, approximate="tanh"), batch_first=True,
                                              norm_first=True, device=device, dtype=DTYPE).eval()
    with torch.no_grad():
        for mine, torch_attn in ((ours.self_attn, theirs.self_attn), (ours.cross_attn, theirs.multihead_attn)):
            torch_attn.in_proj_weight.copy_(mine.qkv.weight)  # rows: queries, keys, values, as in our fused qkv
            torch_attn.in_proj_bias.copy_(mine.qkv.bias)
            torch_attn.out_proj.weight.copy_(mine.out_proj.weight)
            torch_attn.out_proj.bias.copy_(mine.out_proj.bias)
        for mine, torch_norm in ((ours.norm1, theirs.norm1), (ours.norm2, theirs.norm2), (ours.norm3, theirs.norm3)):
            torch_norm.weight.copy_(mine.weight)
            torch_norm.bias.copy_(mine.bias)
        theirs.linear1.weight.copy_(ours.ffn.fc_in.weight)
        theirs.linear1.bias.copy_(ours.ffn.fc_in.bias)
        theirs.linear2.weight.copy_(ours.ffn.fc_out.weight)
        theirs.linear2.bias.copy_(ours.ffn.fc_out.bias)
    x = torch.randn(2, 5, config.d_model, device=device, dtype=DTYPE)
    memory = torch.randn(2, 7, config.d_model, device=device, dtype=DTYPE)
    source = ids([2] * 7, [3] * 4 + [PAD] * 3, device=device)
    expected = theirs(x, memory, tgt_mask=~causal_mask(5, device), memory_key_padding_mask=source == PAD)
    assert_close(ours(x, memory, padding_mask_of(source, PAD)), expected)  # torch masks: True = blocked


def test_encoder_decoder_shapes_and_tied_head():
    model = build(EncoderDecoder)
    src, tgt_in = ids([2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13]), ids([BOS, 4, 5], [BOS, 6, 7])
    assert model(src, tgt_in).shape == (2, 3, 20)  # source and target lengths differ
    assert model.encode(src).shape == (2, 6, 32)
    assert model.lm_head.weight is model.embed.token_embedding.weight
    weights = model.cross_attention_weights(src, tgt_in)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 3, 6)
    assert_close(weights[0].sum(-1), torch.ones(2, 4, 3, dtype=DTYPE))


@pytest.mark.parametrize("device", devices_to_test())
def test_decoder_is_causal_in_the_target(device):
    model = build(EncoderDecoder, device=device)
    src = ids([2, 3, 4, 5, 6], device=device)
    a, b = ids([BOS, 4, 5, 6, 7], device=device), ids([BOS, 4, 5, 9, 7], device=device)  # position 3 differs
    out_a, out_b = model(src, a), model(src, b)
    assert_close(out_a[:, :3], out_b[:, :3])  # earlier target positions cannot see the change
    assert (out_a[0, 3:] - out_b[0, 3:]).abs().amax(dim=-1).min() > 1e-6


@pytest.mark.parametrize("device", devices_to_test())
def test_cross_attention_reads_the_source(device):
    model = build(EncoderDecoder, device=device)
    tgt_in = ids([BOS, 4, 5, 6], device=device)
    out_a = model(ids([2, 3, 4, 5, 6], device=device), tgt_in)
    out_b = model(ids([9, 3, 4, 5, 6], device=device), tgt_in)  # only the first source token differs
    # Every target position, even the first (which sees only BOS in the target), depends on the whole source.
    assert (out_a[0] - out_b[0]).abs().amax(dim=-1).min() > 1e-6


@pytest.mark.parametrize("device", devices_to_test())
def test_source_padding_is_ignored_with_its_mask(device):
    model = build(EncoderDecoder, device=device)
    tgt_in = ids([BOS, 4, 5], device=device)
    padded = ids([2, 3, 4, PAD, PAD], device=device)
    mask = padding_mask_of(padded, PAD)
    assert_close(model(padded, tgt_in, mask), model(ids([2, 3, 4], device=device), tgt_in))
    assert (model.cross_attention_weights(padded, tgt_in, mask)[0][..., 3:] == 0).all()


def test_translate_is_greedy_and_consistent_with_teacher_forcing():
    model = build(EncoderDecoder, seed=3)
    src = ids([2, 3, 4, 5], [6, 7, 8, 9])
    out = translate(model, src, BOS, max_len=6)
    assert out.shape == (2, 6) and out.dtype == torch.long
    tgt_in = torch.cat([torch.full((2, 1), BOS), out[:, :-1]], dim=1)
    assert torch.equal(model(src, tgt_in).argmax(-1), out), "each token is the argmax given the tokens before it"
    model.train()
    translate(model, src, BOS, max_len=2)
    assert model.training, "translate puts the model back into the mode it found it in"


def test_translate_stops_at_eos():
    model = build(EncoderDecoder, seed=3)
    src = ids([2, 3, 4, 5])
    first = translate(model, src, BOS, max_len=1)[0, 0].item()
    assert translate(model, src, BOS, max_len=8, eos=first).shape == (1, 1)


# ----------------------------------------------------------------------------------------------- the toy task

def test_reverse_task():
    src, tgt_in, tgt_out = reverse_task(50, length=8, vocab_size=16, generator=torch.Generator().manual_seed(0))
    assert src.shape == tgt_in.shape == tgt_out.shape == (50, 8)
    assert torch.equal(tgt_out, src.flip(1))
    assert (tgt_in[:, 0] == BOS).all() and torch.equal(tgt_in[:, 1:], tgt_out[:, :-1])
    assert src.min() >= 2 and src.max() <= 15
    assert to_text([2, 3, 4, PAD, BOS]) == "abc_^"
    again = reverse_task(50, length=8, vocab_size=16, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(again, src)


def test_training_lowers_the_loss(one_thread):
    torch.manual_seed(0)
    model = EncoderDecoder(toy_config())  # the model of the book's page, 80 of its steps (a few seconds)
    losses = train_reverse(model, steps=80, batch_size=64, lr=3e-3, seed=0)
    assert len(losses) == 80
    assert losses[0] > 2.3  # about ln(14): a guess among 14 letters
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5
    src, _, tgt_out = reverse_task(8, generator=torch.Generator().manual_seed(1))
    assert 0.0 <= exact_match(model, src, tgt_out) <= 1.0
