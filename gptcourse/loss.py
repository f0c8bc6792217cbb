"""The pretraining loss: next-token cross-entropy from logits, perplexity, and evaluation on held-out data (Chapter 5).

A language model's output at each position is a vector of ``V`` logits, one per token of the vocabulary. The loss
asks: how much probability did the model give to the token that really came next? Cross-entropy is the average of
``-log p(correct token)`` over all predicted positions. Perplexity, ``exp(loss)``, reads it as a number of choices:
a model with perplexity 20 is as unsure as one picking uniformly among 20 tokens. An untrained model that spreads
its guess evenly over the vocabulary scores ``ln V`` (perplexity ``V``): the loss every training run starts from.
"""

import math

import torch

IGNORE_INDEX = -100  # targets with this value (padding, a prompt masked out of the loss) are not predicted


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean of ``-log softmax(logits)[target]`` over every position whose target is not ``ignore_index``.

    ``logits`` has shape ``(..., V)`` and ``targets`` the same shape without the last axis. The same value as
    ``F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=ignore_index)``, nan when every target
    is ignored (nothing to average), as there.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    # log softmax = logit - logsumexp(logits); logsumexp subtracts the row's maximum first, so large logits cannot
    # overflow exp() (a float32 logit of 100 would). Ignored positions pick token 0 and are then zeroed: cheaper than
    # selecting the kept rows (a copy of the logits, and a slow backward).
    picked = logits.gather(1, torch.where(keep, targets, 0)[:, None]).squeeze(1)
    log_probs = torch.where(keep, picked - torch.logsumexp(logits, dim=-1), 0.0)
    return -log_probs.sum() / keep.sum()


def perplexity(mean_loss: float) -> float:
    """``exp(mean per-token loss)``: how many equally likely tokens the model is choosing between, on average.
    Take it of the *mean* loss: the exponential of a summed loss grows with the number of tokens, not with doubt."""
    return math.exp(float(mean_loss))


def untrained_loss(vocab_size: int) -> float:
    """The loss of a model that gives every token the same probability ``1 / V``: ``ln V``."""
    return math.log(vocab_size)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, max_batches: int | None = None,
             ignore_index: int = IGNORE_INDEX) -> float:
    """The mean per-token loss of ``model`` over the ``(x, y)`` batches of ``loader`` (on the model's device).

    Every predicted token weighs the same, whatever batch it is in (a plain mean of the batch losses would give the
    tokens of a small last batch more weight). The model is put in eval mode (no dropout) and back as it was.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for index, (x, y) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            x, y = x.to(device), y.to(device)
            n = int((y != ignore_index).sum())
            if n:
                total += float(cross_entropy(model(x), y, ignore_index)) * n
                count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the loader gave no tokens to predict (is it empty, or is every target ignored?)")
    return total / count
