"""Beam search: keep the ``num_beams`` most likely partial texts instead of one (Chapter 6).

Greedy decoding commits to the best token at every step, and a slightly worse token now can lead to a much more
likely text later. Beam search keeps ``num_beams`` candidates ("beams"), scored by the sum of their tokens'
log-probabilities. At each step every beam is extended by every token, and the best ``num_beams`` of those
``num_beams * V`` continuations survive. A candidate that ends (end-of-text, or the last step) becomes a finished
**hypothesis**, scored with a **length penalty**: ``sum of log-probs / generated length ** length_penalty``. Each
log-probability is negative, so without it longer texts always lose; ``length_penalty > 0`` favours longer ones.

The rules are those of ``transformers`` ``generate(num_beams=...)`` with ``early_stopping=False`` (its default), so
the output is the same token for token: the best ``2 * num_beams`` continuations are looked at (enough to keep
``num_beams`` running when some of them end), only the best ``num_beams`` of them may become hypotheses, and the
search stops when no running beam can beat the worst of ``num_beams`` hypotheses any more.
"""

import torch

from . import logits_processors as lp
from .generate import next_token_logits
from .kv_cache import KVCache

_NEVER = -1.0e9  # the score of an empty slot (as transformers), low enough to lose against any real candidate


def beam_search(model, ids: torch.Tensor, num_beams: int = 4, max_new_tokens: int = 20, length_penalty: float = 1.0,
                eos_id: int | None = None, processors=(), use_cache: bool = True) -> torch.Tensor:
    """The prompt ``ids`` ``(T,)`` followed by the best hypothesis's tokens.

    ``processors`` (e.g. ``RepetitionPenalty``) reshape the log-probabilities at each step, as in ``transformers``.
    """
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"beam_search continues one prompt: ids of shape (T,) with T >= 1, got {tuple(ids.shape)}")
    if num_beams < 1 or max_new_tokens < 1:
        raise ValueError(f"need num_beams >= 1 and max_new_tokens >= 1, got {num_beams} and {max_new_tokens}")
    model.eval()
    prompt_length = ids.numel()
    beams = ids.repeat(num_beams, 1)  # (num_beams, T): all start as the prompt ...
    scores = torch.full((num_beams,), _NEVER, device=ids.device)
    scores[0] = 0.0  # ... and only the first counts, so the first step does not pick one token num_beams times
    done_seqs, done_scores = [None] * num_beams, torch.full((num_beams,), _NEVER)
    cache = KVCache(model.config, prompt_length + max_new_tokens) if use_cache else None
    with torch.no_grad():
        for step in range(max_new_tokens):
            log_probs = next_token_logits(model, beams, cache).log_softmax(dim=-1)
            log_probs = lp.process(log_probs, beams, processors, prompt_length)
            V = log_probs.shape[-1]
            total = (scores[:, None] + log_probs).flatten()  # every beam times every token: num_beams * V
            cand_scores, flat = total.topk(min(2 * num_beams, total.numel()))
            parents, tokens = flat // V, flat % V
            ends = (tokens == eos_id) if eos_id is not None else torch.zeros_like(tokens, dtype=torch.bool)
            if step == max_new_tokens - 1:
                ends = torch.ones_like(ends)
            candidates = torch.cat([beams[parents], tokens[:, None]], dim=1)
            # Finished: the candidates among the best num_beams that end now, scored with the length penalty.
            for rank in range(min(num_beams, len(tokens))):
                if ends[rank]:
                    score = cand_scores[rank].item() / (step + 1) ** length_penalty
                    worst = int(done_scores.argmin())
                    if score > done_scores[worst]:
                        done_seqs[worst], done_scores[worst] = candidates[rank], score
            if bool(ends.all()):
                break
            # Running: the best num_beams candidates that did not end.
            keep = (~ends).nonzero().squeeze(1)[:num_beams]
            beams, scores = candidates[keep], cand_scores[keep]
            if cache is not None:
                cache.reorder(parents[keep])
            if _cannot_improve(scores, done_scores, step + 1, length_penalty):
                break
    best = int(done_scores.argmax())
    return done_seqs[best]


def _cannot_improve(running: torch.Tensor, done: torch.Tensor, length: int, length_penalty: float) -> bool:
    """True when all ``num_beams`` hypothesis slots are filled and the best running beam, scored at its present
    length, is not better than the worst of them (``transformers``' rule for ``early_stopping=False``)."""
    if bool((done <= _NEVER).any()):
        return False
    return running[0].item() / length ** length_penalty <= done.min().item()
