"""gptcourse.train on a tiny GPT: it learns, resumes bit for bit, stops on a nan, saves on Ctrl-C."""

import math

import pytest
import torch

from gptcourse.checkpoint import load_checkpoint
from gptcourse.model import GPT, GPTConfig
from gptcourse.train import TrainConfig, batch_generator, random_windows, train

VOCAB = 20


def _ids(n=600, seed=0):
    """A stream with structure to learn: a repeating pattern with some noise."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.arange(n) % 7 + 3
    noise = torch.randint(0, VOCAB, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.1, noise, pattern)


def _model(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, context_length=16, d_model=16, n_layers=1, n_heads=2, dropout=dropout))


def _config(**changes):
    base = dict(steps=12, batch_size=4, context_length=16, warmup_steps=3, max_lr=1e-2, min_lr=1e-3, eval_every=4,
                eval_batches=2, checkpoint_every=4)
    return TrainConfig(**{**base, **changes})


def test_random_windows_are_next_token_pairs_and_reproducible():
    ids = torch.arange(100)
    x, y = random_windows(ids, 5, 8, batch_generator(3, 7))
    assert x.shape == y.shape == (5, 8) and torch.equal(y, x + 1)
    again, _ = random_windows(ids, 5, 8, batch_generator(3, 7))
    other, _ = random_windows(ids, 5, 8, batch_generator(3, 8))
    assert torch.equal(x, again) and not torch.equal(x, other)
    with pytest.raises(ValueError, match="too few"):
        random_windows(torch.arange(8), 2, 8, batch_generator(0, 0))


def test_the_loss_falls_and_is_reported():
    history = train(_model(), _ids(), _ids(seed=1), _config(steps=40, eval_every=20), progress=False)
    assert len(history.train_loss) == 40 and history.val_steps == [20, 40]
    assert history.train_loss[0] > math.log(VOCAB) - 0.5  # an untrained model is near ln V
    assert history.val_loss[-1] < history.train_loss[0] - 0.5 and history.tokens_per_s > 0


def test_ctrl_c_saves_and_a_resumed_run_continues_bit_for_bit(tmp_path):
    straight_model = _model()
    straight = train(straight_model, _ids(), _ids(seed=1), _config(), progress=False)

    config = _config(checkpoint=str(tmp_path / "run.safetensors"), checkpoint_every=100)
    stopped = _model()
    _interrupt_after(stopped, training_calls=6)  # Ctrl-C during step 6 (0-based), after 6 finished steps
    partial = train(stopped, _ids(), _ids(seed=1), config, progress=False)
    assert partial.interrupted and len(partial.train_loss) == 6
    assert load_checkpoint(config.checkpoint, _model(seed=3))["step"] == 6

    torch.manual_seed(99)  # as in a new process: other weights and generator states, all restored from the file
    resumed_model = _model(seed=5)
    resumed = train(resumed_model, _ids(), _ids(seed=1), config, resume=True, progress=False)
    assert resumed.train_loss == straight.train_loss and resumed.val_loss == straight.val_loss
    for a, b in zip(straight_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def _interrupt_after(model, training_calls):
    """Make the model raise KeyboardInterrupt in its next training-mode forward after ``training_calls`` of them."""
    count = {"n": 0}
    forward = model.forward

    def patched(*args, **kwargs):
        if model.training:
            count["n"] += 1
            if count["n"] > training_calls:
                model.forward = forward  # only once
                raise KeyboardInterrupt
        return forward(*args, **kwargs)

    model.forward = patched


def test_a_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    model = _model()
    calls = {"n": 0}
    forward = model.forward

    def turns_nan(x):
        calls["n"] += 1
        logits = forward(x)
        return logits * float("nan") if calls["n"] > 5 else logits  # step 5 goes wrong (evaluation is not run yet)

    model.forward = turns_nan
    with pytest.raises(FloatingPointError, match="step 5.*last good checkpoint"):
        train(model, _ids(), _ids(seed=1), _config(checkpoint=str(path), checkpoint_every=2, eval_every=100),
              progress=False)
    saved = load_checkpoint(path, _model(seed=3))
    assert saved["step"] == 4  # written after step 4; nothing was saved from the bad step
