"""gptcourse.loss against PyTorch's own cross-entropy (the oracle), and evaluation as a token-weighted mean."""

import math

import pytest
import torch
import torch.nn.functional as F

from gptcourse.loss import IGNORE_INDEX, cross_entropy, evaluate, perplexity, untrained_loss


def _oracle(logits, targets, ignore_index=IGNORE_INDEX):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), targets.reshape(-1),
                           ignore_index=ignore_index)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 11), (1, 1, 4)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_torch_cross_entropy_with_its_gradient(shape, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    ours = cross_entropy(logits, targets)
    (grad,) = torch.autograd.grad(ours, logits)
    reference = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    (expected,) = torch.autograd.grad(reference, logits)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert ours.dtype == dtype and ours.shape == ()
    assert torch.allclose(ours, reference, atol=tol, rtol=tol) and torch.allclose(grad, expected, atol=tol, rtol=tol)


def test_large_logits_stay_finite_in_float32():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 50, generator=g) * 3 + 1e4  # exp(1e4) overflows any float
    targets = torch.randint(0, 50, (4, 6), generator=g)
    ours = cross_entropy(logits, targets)
    assert torch.isfinite(ours) and abs(float(ours) - float(_oracle(logits, targets))) < 1e-3


def test_ignored_targets_do_not_count():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(3, 8, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (3, 8))
    padded = targets.clone()
    padded[0, 5:] = IGNORE_INDEX  # padding
    assert torch.allclose(cross_entropy(logits, padded), _oracle(logits, padded))
    assert not torch.allclose(cross_entropy(logits, padded), _oracle(logits, targets))  # it did leave tokens out
    prompt = targets.clone()
    prompt[2, :3] = -1  # another marker, given as ignore_index
    assert torch.allclose(cross_entropy(logits, prompt, ignore_index=-1), _oracle(logits, prompt, -1))
    assert torch.isnan(cross_entropy(logits, torch.full((3, 8), IGNORE_INDEX)))  # nothing to average, as in torch


def test_perplexity_and_the_untrained_loss():
    vocab = 37
    uniform = torch.zeros(2, 5, vocab)  # every token equally likely
    loss = cross_entropy(uniform, torch.randint(0, vocab, (2, 5)))
    assert math.isclose(float(loss), untrained_loss(vocab), rel_tol=1e-6)
    assert math.isclose(perplexity(loss), vocab, rel_tol=1e-5)
    assert perplexity(0.0) == 1.0


class _Bigram(torch.nn.Module):
    """A model whose logits depend only on the current token: enough to test evaluation."""

    def __init__(self, vocab):
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.table(x))


def test_evaluate_weighs_every_token_the_same_and_restores_the_mode():
    torch.manual_seed(0)
    model = _Bigram(13).train()
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randint(0, 13, (b, 6), generator=g), torch.randint(0, 13, (b, 6), generator=g))
               for b in (4, 4, 1)]  # a small last batch
    batches[1][1][0, :4] = IGNORE_INDEX
    xs, ys = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    with torch.no_grad():
        expected = float(_oracle(model.eval()(xs), ys))
    model.train()
    assert math.isclose(evaluate(model, batches), expected, rel_tol=1e-6)
    assert model.training  # put back in training mode
    with torch.no_grad():
        first_only = float(_oracle(model.eval()(batches[0][0]), batches[0][1]))
    assert math.isclose(evaluate(model, batches, max_batches=1), first_only, rel_tol=1e-6)
    with pytest.raises(ValueError, match="no tokens"):
        evaluate(model, [])
