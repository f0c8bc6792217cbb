"""gptcourse.train on a tiny GPT: it learns, resumes bit for bit, stops on a nan, saves on Ctrl-C; bfloat16 autocast
and torch.compile."""

import math

import pytest
import torch

from gptcourse.checkpoint import load_checkpoint
from gptcourse.model import GPT, GPTConfig
import gptcourse.train
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


def test_bfloat16_runs_the_forward_pass_in_bf16_and_keeps_the_weights_float32():
    model = _model()
    seen = set()
    model.lm_head.register_forward_hook(lambda module, args, out: seen.add(out.dtype) if module.training else None)
    history = train(model, _ids(), _ids(seed=1), _config(steps=40, eval_every=20, precision="bfloat16"),
                    progress=False)
    assert seen == {torch.bfloat16}  # the matrix products ran under autocast
    assert history.val_loss[-1] < history.train_loss[0] - 0.5  # and it learns as well
    assert all(p.dtype == torch.float32 for p in model.parameters())
    float32 = train(_model(), _ids(), _ids(seed=1), _config(steps=40, eval_every=20), progress=False)
    assert history.train_loss != float32.train_loss  # rounded differently ...
    assert history.train_loss == pytest.approx(float32.train_loss, abs=0.05)  # ... but nearly the same run


def test_bfloat16_keeps_the_optimizer_state_float32_in_the_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    train(_model(), _ids(), _ids(seed=1), _config(steps=4, precision="bfloat16", checkpoint=str(path)), progress=False)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if k.startswith(("model.", "optimizer."))}
    assert dtypes == {torch.float32}


def test_an_impossible_precision_fails_before_training(monkeypatch):
    with pytest.raises(ValueError, match="float32' or 'bfloat16"):
        train(_model(), _ids(), _ids(seed=1), _config(precision="float16"), progress=False)
    monkeypatch.setattr(gptcourse.train, "bf16_supported", lambda device: False)  # as on a pre-Ampere GPU
    with pytest.raises(RuntimeError, match="bfloat16 arithmetic.*Use precision='float32'"):
        train(_model(), _ids(), _ids(seed=1), _config(precision="bfloat16"), progress=False)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")  # torch.compile's own imports
def test_compiled_training_matches_eager_saves_the_plain_module_and_resumes(tmp_path, monkeypatch):
    eager = train(_model(dropout=0.0), _ids(), _ids(seed=1), _config(), progress=False)

    config = _config(compile=True, checkpoint=str(tmp_path / "run.safetensors"), checkpoint_every=100)
    schedule = gptcourse.train.warmup_cosine

    def ctrl_c_at_step_6(step, *args):
        if step == 6:
            raise KeyboardInterrupt
        return schedule(step, *args)

    monkeypatch.setattr(gptcourse.train, "warmup_cosine", ctrl_c_at_step_6)
    partial = train(_model(dropout=0.0), _ids(), _ids(seed=1), config, progress=False)
    monkeypatch.undo()
    assert partial.interrupted and len(partial.train_loss) == 6
    assert load_checkpoint(config.checkpoint, _model(seed=3))["step"] == 6  # plain names: no "_orig_mod." prefix

    resumed = train(_model(seed=5, dropout=0.0), _ids(), _ids(seed=1), config, resume=True, progress=False)
    # Compiled kernels add up in another order than eager ones: the same run, to rounding.
    assert resumed.train_loss == pytest.approx(eager.train_loss, rel=1e-4)
    assert resumed.val_loss == pytest.approx(eager.val_loss, rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")
def test_bfloat16_on_cuda_trains_or_says_why_not():
    model = _model().cuda()
    config = _config(steps=10, precision="bfloat16")
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        with pytest.raises(RuntimeError, match="bfloat16 arithmetic"):
            train(model, _ids(), _ids(seed=1), config, progress=False)
        return
    history = train(model, _ids(), _ids(seed=1), config, progress=False)
    assert all(math.isfinite(loss) for loss in history.train_loss)
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
