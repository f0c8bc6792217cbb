"""The course model: a small GPT pretrained on the course corpus with the course tokenizer (Chapter 5).

Chapters 6 and 7 start from it. ``course_model()`` returns it: loaded from the cache when a model of the same recipe
(model shape, training settings, corpus and tokenizer fingerprints) was trained before, trained now otherwise, and
cached. Training is seeded, so the same recipe gives the same model on the same machine. From the command line::

    python -m gptcourse.pretrain            (make pretrain)    train it, or say where the cached one is
    python -m gptcourse.pretrain --size gpu                    a larger model, for a GPU (``SIZES["gpu"]``)

The cache lives outside git, in ``$GPTCOURSE_CACHE`` (default ``~/.cache/gptcourse``), one safetensors file per
recipe, named by the recipe's fingerprint: changing any setting, the corpus or the tokenizer trains a new model.
"""

import argparse
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import corpus
from .checkpoint import load_checkpoint, save_checkpoint
from .bpe import ENDOFTEXT
from .course_tokenizer import VOCAB_SIZE, recorded_facts
from .data import encode_text
from .device import pick_device
from .model import GPT, GPTConfig
from .seed import set_seed
from .train import TrainConfig, train


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the course model: change one value and a new model is trained and cached."""

    model: GPTConfig = field(default_factory=lambda: GPTConfig(
        vocab_size=VOCAB_SIZE + 1, context_length=128, d_model=128, n_layers=4, n_heads=4, dropout=0.0,
        use_sdpa=True, use_fused_ops=True))  # PyTorch's kernels: Chapter 4's results, about 1.2x faster on a CPU
    # No dropout: about 7 passes over the text are too few to overfit (the held-out loss falls to the end), and on a
    # CPU the random masks would cost a third of the time.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=16, context_length=128, max_lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=100,
        eval_batches=8))
    story_chars: int = 250_000  # characters of generated stories in the training text (the help pages are fixed)
    seed: int = 0

    def fingerprint(self, corpus_fingerprint: str) -> str:
        """A short hash of the recipe, the corpus and the tokenizer: the cached model's name."""
        facts = {"recipe": asdict(self), "corpus": corpus_fingerprint, "tokenizer": recorded_facts()}
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# On a GPU the course model grows by one setting, ``--size gpu``: wider, deeper, longer windows, sixteen times more
# stories, bfloat16 and PyTorch's fused kernels. Chapters 6 and 7 use "cpu", which every machine trains in minutes.
SIZES = {
    "cpu": Recipe(),
    "gpu": Recipe(
        model=GPTConfig(vocab_size=VOCAB_SIZE + 1, context_length=256, d_model=384, n_layers=6, n_heads=6,
                        dropout=0.1, use_sdpa=True, use_fused_ops=True),
        train=TrainConfig(steps=3000, batch_size=64, context_length=256, max_lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_every=250, eval_batches=16, precision="bfloat16"),
        story_chars=4_000_000),
    # The draft model of Chapter 6's speculative decoding: same tokenizer and text, an eighth of the parameters
    # in the blocks, trained for half the steps.
    "draft": Recipe(
        model=GPTConfig(vocab_size=VOCAB_SIZE + 1, context_length=128, d_model=64, n_layers=2, n_heads=2,
                        dropout=0.0, use_sdpa=True, use_fused_ops=True),
        train=TrainConfig(steps=300, batch_size=16, context_length=128, max_lr=3e-3, min_lr=3e-4, warmup_steps=30,
                          eval_every=100, eval_batches=8)),
}


def course_texts(story_chars: int = Recipe.story_chars) -> tuple[str, str]:
    """The course corpus as (train, heldout) text, its documents (the help pages, each story) separated by
    ``<|endoftext|>``: the model learns where a text ends, and Chapter 6 stops writing there."""
    train, heldout = corpus.course_documents(story_chars)
    return ENDOFTEXT.join(train), ENDOFTEXT.join(heldout)


def course_ids(story_chars: int = Recipe.story_chars) -> tuple[torch.Tensor, torch.Tensor]:
    """``course_texts()`` as course-tokenizer ids (``<|endoftext|>`` is the one id after the merges)."""
    train_text, heldout_text = course_texts(story_chars)
    return encode_text(train_text), encode_text(heldout_text)


def cache_dir() -> Path:
    return Path(os.environ.get("GPTCOURSE_CACHE", Path.home() / ".cache" / "gptcourse"))


def course_model(recipe: Recipe = Recipe(), device=None, progress: bool = True) -> tuple[GPT, dict]:
    """The course model (in eval mode) and what its cache file says: ``{"step", "extra": {history, recipe}}``."""
    device = torch.device(device) if device is not None else pick_device()
    train_text, heldout_text = course_texts(recipe.story_chars)
    path = cache_dir() / f"course-model-{recipe.fingerprint(corpus.fingerprint(train_text))}.safetensors"
    set_seed(recipe.seed)  # the starting weights too
    model = GPT(recipe.model).to(device)
    if path.exists():
        info = load_checkpoint(path, model, restore_rng=False)
        return model.eval(), info
    partial = path.with_suffix(".partial.safetensors")  # a run interrupted with Ctrl-C goes on from here
    config = TrainConfig(**{**asdict(recipe.train), "checkpoint": str(partial)})
    history = train(model, encode_text(train_text), encode_text(heldout_text), config, resume=True,
                    progress=progress)
    if history.interrupted:
        raise KeyboardInterrupt(f"training stopped; run again to go on from {partial}")
    save_checkpoint(path, model, step=recipe.train.steps,
                    extra={"history": asdict(history), "recipe": asdict(recipe)})
    partial.unlink(missing_ok=True)
    return model.eval(), load_checkpoint(path, model, restore_rng=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gptcourse.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="cpu, cuda, mps (default: the course's choice, gptcourse.device)")
    parser.add_argument("--size", choices=SIZES, default="cpu",
                        help="cpu: the course model of Chapters 6 and 7 (default); gpu: a larger one, for a GPU; "
                             "draft: the small draft model of Chapter 6's speculative decoding")
    args = parser.parse_args(argv)
    model, info = course_model(SIZES[args.size], device=args.device)
    history = info["extra"]["history"]
    name = "The course model" if args.size == "cpu" else f"The {args.size} model"
    print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"held-out loss {history['val_loss'][-1]:.3f} after {info['step']} steps; cached in {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
