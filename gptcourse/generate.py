"""Generating text: the decoding loop, streaming with stop sequences, and a command line (Chapter 6).

A language model only ever gives scores for the *next* token. Text comes from a loop: run the model, reshape the last
position's scores with the logits processors of ``gptcourse.logits_processors``, pick a token (the most likely one,
or a random draw), append it, repeat. Everything that makes decoding differ (greedy or sampled, temperature, top-k,
top-p, min-p, penalties, when to stop) is a setting of that one loop:

- ``generate(model, ids, Sampling(...))``: token ids in, token ids out, with a KV cache (``use_cache=True``) or by
  running the whole text through the model at every step (``use_cache=False``, Chapter 4's way; same tokens).
- ``stream(model, tokenizer, prompt, ...)``: text pieces as they are generated, never half a UTF-8 character, and
  stopping *before* a stop sequence, even one that arrives split over several tokens.
- ``python -m gptcourse.generate "Once upon a time"``: streams text from the course model of Chapter 5 (or from
  GPT-2, ``--model gpt2``, when its weights are on disk).

Beam search is in ``gptcourse.beam_search``, speculative decoding in ``gptcourse.speculative``.
"""

import argparse
import codecs
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from . import logits_processors as lp
from .kv_cache import KVCache


@dataclass(frozen=True)
class Sampling:
    """How to choose each next token. The defaults are greedy decoding: always the most likely token.

    ``do_sample=True`` draws from the processed distribution instead (``generator``: a seeded ``torch.Generator``
    for a reproducible draw). The processors run in the order of ``transformers``: repetition penalty, frequency
    and presence penalties, temperature, top-k, top-p, min-p. ``None`` (or 0 for the additive penalties) switches
    one off. Generation stops after ``max_new_tokens`` tokens, or once every sequence has produced ``eos_id``.
    """

    max_new_tokens: int = 50
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    eos_id: int | None = None

    def __post_init__(self):
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a whole number >= 0, got {self.max_new_tokens!r}")
        if self.do_sample and not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"sampling needs a temperature > 0, got {self.temperature!r}. Temperature 0 means "
                             "'always the most likely token': use greedy decoding (do_sample=False) for that.")
        # Every other value is checked by building its processor, greedy or not.
        self._penalties()
        self._warpers()

    def processors(self) -> list:
        """The logits processors these settings ask for, in the order they run. The warpers (temperature, top-k,
        top-p, min-p) only matter when sampling: they never change which token is the most likely."""
        return self._penalties() + (self._warpers() if self.do_sample else [])

    def _penalties(self) -> list:
        chain = []
        if self.repetition_penalty is not None:
            chain.append(lp.RepetitionPenalty(self.repetition_penalty))
        if self.frequency_penalty or self.presence_penalty:
            chain.append(lp.FrequencyPresencePenalty(self.frequency_penalty, self.presence_penalty))
        return chain

    def _warpers(self) -> list:
        # Greedy decoding ignores the temperature (0 is even a common way to ask for it); sampling checked it above.
        chain = [lp.Temperature(self.temperature)] if self.do_sample and self.temperature != 1.0 else []
        if self.top_k is not None:
            chain.append(lp.TopK(self.top_k))
        if self.top_p is not None:
            chain.append(lp.TopP(self.top_p))
        if self.min_p is not None:
            chain.append(lp.MinP(self.min_p))
        return chain


def _as_batch(ids: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() not in (1, 2) or ids.shape[-1] == 0:
        raise ValueError("the prompt must be a non-empty torch.long tensor of token ids, shape (T,) or (B, T); "
                         f"got {getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
    return (ids[None], True) if ids.dim() == 1 else (ids, False)


def next_token_logits(model, ids: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """The scores ``(B, V)`` for the token after ``ids`` ``(B, T)``, in float32.

    With a cache, only the positions not cached yet go through the model (the whole prompt at the first step, one
    token after that). Without one, the whole text does, cut to the last ``context_length`` tokens.
    """
    if cache is None:
        hidden = model.hidden_states(ids[:, -model.config.context_length:])
    else:
        hidden = model.hidden_states(ids[:, cache.length:], cache=cache)
    return model.lm_head(hidden[:, -1]).float()  # the head on the last position only: the others are not needed


def token_stream(model, ids: torch.Tensor, sampling: Sampling = Sampling(), generator: torch.Generator | None = None,
                 use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield the next token of every sequence, ``(B,)``, one step at a time: the decoding loop itself.

    ``ids`` is the prompt, ``(B, T)``. A sequence that has produced ``eos_id`` keeps getting ``eos_id`` until all
    have (as ``transformers`` pads them). When the text outgrows the model's context the cache is dropped and each
    step runs on the last ``context_length`` tokens (learned positions cannot shift inside a cache).
    """
    processors = sampling.processors()
    prompt_length = ids.shape[1]
    cache = KVCache(model.config) if use_cache else None
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    with torch.no_grad():
        for _ in range(sampling.max_new_tokens):
            if cache is not None and ids.shape[1] > model.config.context_length:
                cache = None
            logits = lp.process(next_token_logits(model, ids, cache), ids, processors, prompt_length)
            if sampling.do_sample:
                token = lp.sample_next(logits, generator)
            else:
                token = lp.greedy_next(logits)
            if sampling.eos_id is not None:
                token = token.masked_fill(finished, sampling.eos_id)
                finished |= token == sampling.eos_id
            ids = torch.cat([ids, token[:, None]], dim=1)
            yield token
            if bool(finished.all()):
                return


def generate(model, ids: torch.Tensor, sampling: Sampling = Sampling(), generator: torch.Generator | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """The prompt ``ids`` ``(T,)`` or ``(B, T)`` followed by the generated tokens, same number of dimensions.

    Greedy by default; see ``Sampling`` for the other settings. Puts the model in eval mode (no dropout).
    """
    batch, single = _as_batch(ids)
    model.eval()
    tokens = list(token_stream(model, batch, sampling, generator, use_cache))
    out = torch.cat([batch, *(t[:, None] for t in tokens)], dim=1)
    return out[0] if single else out


# ---------------------------------------------------------------------------------------------------------------
# Text out: streaming and stop sequences
# ---------------------------------------------------------------------------------------------------------------


class StopChecker:
    """Cuts a stream of text pieces before the first stop sequence, holding back only what might start one.

    ``push(piece)`` returns the text that is now safe to show. A stop sequence can arrive split over several tokens
    ("</", "end", ">"), so the end of the text that could still grow into a stop sequence is held back until the
    next piece decides. Once a stop sequence is complete, ``stopped`` is True and nothing after it is ever shown.
    ``flush()`` gives back what was held when the stream ends without a stop.
    """

    def __init__(self, stops=()):
        self.stops = [s for s in stops if s]
        self.pending, self.stopped = "", False

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        text = self.pending + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.pending, self.stopped = "", True
            return text[:cut]
        keep = self._possible_start(text)
        self.pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def _possible_start(self, text: str) -> int:
        """Length of the longest end of ``text`` that is the beginning of a stop sequence."""
        for n in range(min(len(text), max((len(s) for s in self.stops), default=0)), 0, -1):
            if any(s.startswith(text[-n:]) for s in self.stops):
                return n
        return 0

    def flush(self) -> str:
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text


def token_bytes_of(tokenizer):
    """A function id -> bytes for the course's ``BPETokenizer`` or a ``tiktoken.Encoding``."""
    if hasattr(tokenizer, "token_bytes"):
        return tokenizer.token_bytes
    return tokenizer.decode_single_token_bytes


def stream(model, tokenizer, prompt: str, sampling: Sampling = Sampling(), stop=(),
           generator: torch.Generator | None = None, use_cache: bool = True) -> Iterator[str]:
    """Yield the text that follows ``prompt``, piece by piece, as it is generated.

    - The bytes of each token go through an incremental UTF-8 decoder (Chapter 1): a character whose bytes are
      split over two tokens comes out whole, once its last byte has arrived.
    - ``stop``: strings that end the text; the stop sequence itself is not shown. The end-of-text token
      (``sampling.eos_id``) ends it too.
    """
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long, device=next(model.parameters()).device)
    if ids.numel() == 0:
        raise ValueError("the prompt is empty: give the model at least one token to continue")
    check_prompt_length(ids.numel(), model.config.context_length)
    model.eval()
    to_bytes = token_bytes_of(tokenizer)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stops = StopChecker(stop)
    for token in token_stream(model, ids[None], sampling, generator, use_cache):
        if sampling.eos_id is not None and int(token) == sampling.eos_id:
            break
        text = stops.push(decoder.decode(to_bytes(int(token))))
        if text:
            yield text
        if stops.stopped:
            return
    text = stops.push(decoder.decode(b"", final=True)) + stops.flush()
    if text:
        yield text


def check_prompt_length(n_tokens: int, context_length: int) -> None:
    if n_tokens > context_length:
        raise ValueError(f"the prompt is {n_tokens} tokens long, but the model reads at most {context_length}: "
                         "shorten the prompt")


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------


def load_model_and_tokenizer(name: str, device=None):
    """``("course")``: Chapter 5's model and the course tokenizer, end of text = ``<|endoftext|>``.
    ``("gpt2")`` (or a folder): GPT-2's weights from disk and its tiktoken encoding; never downloads."""
    from .bpe import ENDOFTEXT
    from .device import pick_device
    if name == "course":
        from .course_tokenizer import load_course_tokenizer
        from .pretrain import course_model
        model, _ = course_model(device=device)
        tokenizer = load_course_tokenizer()
        return model, tokenizer, tokenizer.special_tokens[ENDOFTEXT]
    from .gpt2_weights import find_local_checkpoint, from_pretrained_local
    from .tiktoken_bridge import cached_openai_encoding
    tokenizer = cached_openai_encoding("gpt2")
    if find_local_checkpoint(name) is None or tokenizer is None:
        raise SystemExit(f"GPT-2's weights or its tokenizer files are not on this machine ({name!r}); "
                         "use the course model (--model course), which needs no download.")
    model = from_pretrained_local(name)
    return model.to(device or pick_device()).eval(), tokenizer, tokenizer.eot_token


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gptcourse.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("prompt", help="the text to continue")
    parser.add_argument("--model", default="course", help="course (Chapter 5's model, default) or gpt2")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--greedy", action="store_true", help="always the most likely token (no sampling)")
    parser.add_argument("--temperature", type=float, default=0.8, help="> 0; below 1 safer, above 1 wilder")
    parser.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample only among the most likely tokens that make up p")
    parser.add_argument("--min-p", type=float, help="drop tokens less likely than min-p times the best one")
    parser.add_argument("--repetition-penalty", type=float, help="> 1 discourages tokens already in the text")
    parser.add_argument("--frequency-penalty", type=float, default=0.0)
    parser.add_argument("--presence-penalty", type=float, default=0.0)
    parser.add_argument("--stop", action="append", default=[], help="stop before this text (may repeat)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same text")
    parser.add_argument("--no-cache", action="store_true", help="recompute every position at every step")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the course's choice)")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sampling = Sampling(max_new_tokens=args.max_new_tokens, do_sample=not args.greedy,
                            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                            repetition_penalty=args.repetition_penalty, frequency_penalty=args.frequency_penalty,
                            presence_penalty=args.presence_penalty)
    except ValueError as error:
        parser.error(str(error).replace("do_sample=False", "--greedy"))
    model, tokenizer, eos_id = load_model_and_tokenizer(args.model, args.device)
    sampling = replace(sampling, eos_id=eos_id)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    try:
        sys.stdout.write(args.prompt)
        for piece in stream(model, tokenizer, args.prompt, sampling, args.stop, generator, not args.no_cache):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except ValueError as error:
        parser.error(str(error))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
