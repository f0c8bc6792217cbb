"""Speculative decoding: a small draft model guesses a few tokens, the large model checks them all in one pass
(Leviathan et al. 2023; Chen et al. 2023) (Chapter 6).

Generating one token with a large model costs one forward pass, and on most hardware a pass over ``k + 1`` new
positions costs hardly more than over one: the time goes into reading the weights, not into the arithmetic. So a
cheap **draft** model writes ``k`` tokens ahead, and the **target** model scores all of them at once:

- **Greedy**: the target keeps the draft's tokens for as long as they are its own argmax; at the first difference
  it puts its own token instead. The text is exactly the target's greedy text, only produced in fewer target passes.
- **Sampling**: draft token ``x`` (drawn from the draft's ``q``) is accepted with probability
  ``min(1, p(x) / q(x))``; on a rejection a token is drawn from ``max(0, p - q)``, renormalised. Accepted or
  replaced, each token comes out distributed exactly as the target's ``p``: the draft only changes the speed.

When all ``k`` guesses are accepted the target's pass has also given the distribution of the token after them, so
every round adds between 1 and ``k + 1`` tokens.
"""

from dataclasses import dataclass

import torch

from . import logits_processors as lp
from .generate import Sampling
from .kv_cache import KVCache


@dataclass
class SpeculativeStats:
    rounds: int = 0  # target passes after the prompt: one per round
    drafted: int = 0  # tokens the draft proposed
    accepted: int = 0  # of those, kept by the target

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_round(self) -> float:
        return (self.accepted + self.rounds) / self.rounds if self.rounds else 0.0


def _distributions(logits: torch.Tensor, seq: torch.Tensor, start: int, sampling: Sampling, prompt_length: int):
    """Processed probabilities ``(n, V)``: row ``i`` for the token after ``seq[:start + i]``, which is what
    ``logits[i]`` predicts (penalties need the tokens before each position)."""
    processors = sampling.processors()
    rows = [lp.process(logits[i].float(), seq[:start + i], processors, prompt_length) for i in range(len(logits))]
    return torch.stack(rows).softmax(dim=-1)


def _feed(model, seq: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits ``(n, V)`` of the positions of ``seq`` not yet in ``cache`` (which then holds all of ``seq``)."""
    return model(seq[None, cache.length:], cache=cache)[0]


def _pick(probs: torch.Tensor, sampling: Sampling, generator) -> int:
    if sampling.do_sample:
        return int(torch.multinomial(probs, 1, generator=generator))
    return int(probs.argmax())


@torch.no_grad()
def speculative_generate(target, draft, ids: torch.Tensor, sampling: Sampling = Sampling(), num_draft: int = 4,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """The prompt ``ids`` ``(T,)`` and up to ``sampling.max_new_tokens`` new tokens, with the statistics.

    Both models must share the tokenizer (the same vocabulary). Greedy output is identical to
    ``generate(target, ids, sampling)``; sampled output has the same distribution.
    """
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"speculative_generate continues one prompt: ids of shape (T,), got {tuple(ids.shape)}")
    if num_draft < 1:
        raise ValueError(f"num_draft must be >= 1 (how many tokens the draft guesses per round), got {num_draft}")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError("the draft and the target must share the vocabulary: "
                         f"{draft.config.vocab_size} and {target.config.vocab_size} tokens")
    needed = ids.numel() + sampling.max_new_tokens + num_draft
    for name, model in (("target", target), ("draft", draft)):
        if needed > model.config.context_length:
            raise ValueError(f"prompt + max_new_tokens + num_draft = {needed} positions do not fit in the {name}'s "
                             f"context of {model.config.context_length}")
        model.eval()
    prompt_length, seq, stats = ids.numel(), ids.clone(), SpeculativeStats()
    target_cache, draft_cache = KVCache(target.config), KVCache(draft.config)
    # Invariant: both caches hold every token of seq but the last, which the next pass feeds.
    while seq.numel() - prompt_length < sampling.max_new_tokens:
        # 1. The draft guesses num_draft tokens, one at a time, keeping its distributions q.
        guesses, q = seq, []
        for _ in range(num_draft):
            probs = _distributions(_feed(draft, guesses, draft_cache)[-1:], guesses, guesses.numel(), sampling,
                                   prompt_length)[0]
            q.append(probs)
            guesses = torch.cat([guesses, guesses.new_tensor([_pick(probs, sampling, generator)])])
        drafted = guesses[seq.numel():]
        # 2. The target scores the last token of seq and every guess in one pass: num_draft + 1 distributions p.
        p = _distributions(_feed(target, guesses, target_cache)[-(num_draft + 1):], guesses, seq.numel(), sampling,
                           prompt_length)
        # 3. Keep the guesses the target agrees with; the first disagreement is replaced by the target's token.
        new = []
        for i, x in enumerate(drafted.tolist()):
            if _accepts(p[i], q[i], x, sampling, generator):
                new.append(x)
                continue
            new.append(_replacement(p[i], q[i], sampling, generator))
            break
        else:  # every guess accepted: the target's last distribution gives one more token for free
            new.append(_pick(p[num_draft], sampling, generator))
        stats.rounds += 1
        stats.drafted += num_draft
        stats.accepted += len(new) - 1  # all but the target's own token
        seq = torch.cat([seq, seq.new_tensor(new)])
        # 4. Forget the cached positions of rejected guesses.
        for cache in (target_cache, draft_cache):
            cache.crop(min(cache.length, seq.numel() - 1))
        if sampling.eos_id is not None and sampling.eos_id in new:
            seq = seq[:prompt_length + (seq[prompt_length:] == sampling.eos_id).nonzero()[0, 0] + 1]
            break
    return seq[:prompt_length + sampling.max_new_tokens], stats


def _accepts(p: torch.Tensor, q: torch.Tensor, x: int, sampling: Sampling, generator) -> bool:
    if not sampling.do_sample:
        return int(p.argmax()) == x
    # Accept with probability min(1, p(x) / q(x)): always when the target likes x at least as much as the draft.
    u = torch.rand((), generator=generator, device=p.device)
    return bool(u * q[x] < p[x])


def _replacement(p: torch.Tensor, q: torch.Tensor, sampling: Sampling, generator) -> int:
    if not sampling.do_sample:
        return int(p.argmax())
    residual = (p - q).clamp(min=0)  # where the target wants more than the draft gave
    if float(residual.sum()) <= 0:  # p == q up to rounding: a rejection is then (almost) impossible anyway
        residual = p
    return int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
