"""Decoding as a pipeline of logits processors: temperature, top-k, top-p, min-p and repetition penalties (Chapter 6).

To generate text the model gives, for the next position, a vector of ``V`` scores (logits), one per token. Before
picking a token we reshape those scores: sharpen or flatten them (temperature), cut the unlikely tail (top-k, top-p,
min-p) or push down tokens we have already produced (repetition, frequency and presence penalties). Each step is a
processor: a callable ``processor(logits, input_ids) -> new logits``. A removed token gets the score ``-inf``, so
softmax gives it probability exactly 0 and no sampler can pick it.

``logits`` is a float tensor of shape ``(V,)`` or ``(batch, V)``; ``input_ids`` holds the tokens generated so far,
``(seq,)`` or ``(batch, seq)`` to match. Processors never modify their inputs: they return new tensors. The rules
are those of Hugging Face ``transformers`` (whose processors take the arguments the other way round,
``(input_ids, scores)``), and, for the frequency and presence penalties, of OpenAI's API.
"""

import math

import torch

# ---------------------------------------------------------------------------------------------------------------
# Checks shared by the processors
# ---------------------------------------------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor, got {type(logits).__name__} "
                         f"{getattr(logits, 'dtype', '')}".rstrip())
    if logits.dim() not in (1, 2) or logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (V,) or (batch, V) with V >= 1, got {tuple(logits.shape)}")


def _check_ids(logits: torch.Tensor, input_ids: torch.Tensor) -> None:
    """The penalties need the tokens so far, one row per row of logits, each a valid token id."""
    if input_ids is None:
        raise ValueError("this processor needs input_ids: the tokens generated so far")
    if input_ids.dim() != logits.dim() or (logits.dim() == 2 and input_ids.shape[0] != logits.shape[0]):
        raise ValueError(f"input_ids of shape {tuple(input_ids.shape)} do not match logits of shape "
                         f"{tuple(logits.shape)}: use (seq,) with (V,) and (batch, seq) with (batch, V)")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= logits.shape[-1]):
        raise ValueError(f"input_ids must lie in [0, {logits.shape[-1]}) (the vocabulary of the logits), "
                         f"got values from {int(input_ids.min())} to {int(input_ids.max())}")


def _check_number(name: str, value, low: float, high: float, low_open: bool, high_open: bool = False) -> float:
    """A real number in the given interval; booleans are refused (True would silently mean 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


class Processor:
    """What every processor shares: a readable ``repr``, e.g. ``TopP(p=0.9)``."""

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({settings})"


# ---------------------------------------------------------------------------------------------------------------
# Warpers: reshape or cut the distribution, whatever came before
# ---------------------------------------------------------------------------------------------------------------


class Temperature(Processor):
    """Divide the logits by ``temperature`` (> 0) before softmax.

    ``T < 1`` sharpens the distribution towards the most likely token (greedy decoding is the limit ``T -> 0``);
    ``T > 1`` flattens it towards uniform. The order of the tokens never changes, only how far apart they are.
    """

    def __init__(self, temperature: float):
        self.temperature = _check_number("temperature", temperature, 0.0, math.inf, low_open=True, high_open=True)

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        _check_logits(logits)
        return logits / self.temperature


class TopK(Processor):
    """Keep the ``k`` highest logits, set the others to ``-inf``; ``k >= 1``, and ``k >= V`` keeps every token.

    Ties: every token whose logit equals the k-th largest is kept too (as in ``transformers``), so a tie at the
    cut-off can keep more than ``k`` tokens rather than drop one of two equal tokens arbitrarily.
    """

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"top-k needs an integer k >= 1 (the number of tokens to keep), got {k!r}")
        self.k = k

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        _check_logits(logits)
        k = min(self.k, logits.shape[-1])
        kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth_largest, -math.inf)


class TopP(Processor):
    """Nucleus sampling: keep the fewest most likely tokens whose total probability reaches ``p`` (0 < p <= 1).

    Tokens are taken in order of decreasing probability and a token is kept if the tokens before it add up to less
    than ``p``. So the token that crosses the threshold is always kept, and so is the most likely token (nothing
    comes before it). ``p = 1`` keeps every token. Ties: tokens of equal probability are taken in the order of their
    ids, so at the cut-off the lower id is kept (``transformers`` leaves that order to ``torch.sort``).
    """

    def __init__(self, p: float):
        self.p = _check_number("top-p", p, 0.0, 1.0, low_open=True)

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        _check_logits(logits)
        if self.p == 1.0:  # rounding in the running sum could otherwise drop a tiny last token
            return logits.clone()
        probs, order = torch.sort(logits.softmax(dim=-1), dim=-1, descending=True, stable=True)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
        remove_sorted = mass_before >= self.p
        # Back from rank order to token order: token order[i] gets the verdict of rank i.
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        return logits.masked_fill(remove, -math.inf)


class MinP(Processor):
    """Keep the tokens whose probability is at least ``min_p`` times that of the most likely token (0 <= min_p <= 1).

    Unlike top-p the cut-off follows the model's confidence: when one token dominates, few others survive; when the
    distribution is flat, many do. The most likely token is always kept; ``min_p = 0`` keeps every token.
    """

    def __init__(self, min_p: float):
        self.min_p = _check_number("min-p", min_p, 0.0, 1.0, low_open=False)

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        _check_logits(logits)
        probs = logits.softmax(dim=-1)
        threshold = self.min_p * probs.amax(dim=-1, keepdim=True)
        return logits.masked_fill(probs < threshold, -math.inf)


# ---------------------------------------------------------------------------------------------------------------
# Penalties: use the tokens generated so far to discourage repeating them
# ---------------------------------------------------------------------------------------------------------------


def _token_counts(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """How often each token of the vocabulary occurs in ``input_ids``, shaped like ``logits``."""
    rows = logits.shape[0] if logits.dim() == 2 else 1
    ids = input_ids.reshape(rows, input_ids.shape[-1]).long()  # (rows, seq); seq may be 0: nothing generated yet
    counts = torch.zeros(ids.shape[0], logits.shape[-1], dtype=logits.dtype, device=logits.device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=logits.dtype))
    return counts.reshape(logits.shape)


class RepetitionPenalty(Processor):
    """CTRL's repetition penalty (Keskar et al., 2019), as in ``transformers``: ``penalty > 0``, 1 changes nothing.

    Each distinct token already in the sequence is penalised once, however often it occurred: a positive logit is
    divided by the penalty and a negative one multiplied, so with ``penalty > 1`` both move down (dividing a negative
    logit would raise it). ``penalty < 1`` encourages repetition instead.
    """

    def __init__(self, penalty: float):
        self.penalty = _check_number("repetition penalty", penalty, 0.0, math.inf, low_open=True, high_open=True)

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        _check_logits(logits)
        _check_ids(logits, input_ids)
        seen = _token_counts(logits, input_ids) > 0
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        return torch.where(seen, penalised, logits)


class FrequencyPresencePenalty(Processor):
    """OpenAI's additive penalties: ``logit -= count * frequency_penalty + (count > 0) * presence_penalty``.

    ``count`` is how often the token already occurs in the sequence. The frequency penalty grows with each
    repetition; the presence penalty is paid once, by any token that has appeared. Positive values discourage
    repetition, negative ones encourage it (OpenAI accepts -2 to 2; any finite value is accepted here).
    As in OpenAI's API (and vLLM), only the *generated* tokens count, not the prompt: ``process`` passes this
    processor the tokens after the prompt (``counts_prompt = False``).
    """

    counts_prompt = False

    def __init__(self, frequency_penalty: float = 0.0, presence_penalty: float = 0.0):
        self.frequency_penalty = _check_number("frequency penalty", frequency_penalty, -math.inf, math.inf,
                                               low_open=True, high_open=True)
        self.presence_penalty = _check_number("presence penalty", presence_penalty, -math.inf, math.inf,
                                              low_open=True, high_open=True)

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        _check_logits(logits)
        _check_ids(logits, input_ids)
        counts = _token_counts(logits, input_ids)
        return logits - counts * self.frequency_penalty - (counts > 0).to(logits.dtype) * self.presence_penalty


# ---------------------------------------------------------------------------------------------------------------
# The pipeline and the choice of the next token
# ---------------------------------------------------------------------------------------------------------------


def process(logits: torch.Tensor, input_ids: torch.Tensor | None, processors, prompt_length: int = 0) -> torch.Tensor:
    """Apply ``processors`` in order, each to the output of the one before.

    Order matters: penalties belong before temperature and the cut-offs (they change which tokens are likely), and
    temperature before top-p and min-p (it changes the probabilities those thresholds read). A processor whose
    ``counts_prompt`` is False (the frequency and presence penalties) sees only the tokens after the first
    ``prompt_length``: the generated ones.
    """
    _check_logits(logits)
    for processor in processors:
        ids = input_ids
        if not getattr(processor, "counts_prompt", True) and ids is not None:
            ids = ids[..., prompt_length:]
        logits = processor(logits, ids)
    return logits


def _check_some_token_left(logits: torch.Tensor) -> None:
    if bool((logits == -math.inf).all(dim=-1).any()):
        raise ValueError("every token was filtered out (all logits are -inf): nothing left to choose from")


def sample_next(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw the next token from ``softmax(logits)``: one id per row, shape ``()`` for ``(V,)`` logits, ``(batch,)``
    for ``(batch, V)``. Pass a seeded ``torch.Generator`` to make the draw reproducible."""
    _check_logits(logits)
    _check_some_token_left(logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def greedy_next(logits: torch.Tensor) -> torch.Tensor:
    """The most likely next token: one id per row, shaped as in ``sample_next``; ties go to the lowest id."""
    _check_logits(logits)
    return logits.argmax(dim=-1)
