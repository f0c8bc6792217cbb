"""gptcourse.pretrain: the course model is trained once per recipe, cached outside git, then loaded."""

import pytest
import torch

from gptcourse import pretrain
from gptcourse.model import GPTConfig
from gptcourse.train import TrainConfig

TINY = pretrain.Recipe(model=GPTConfig(vocab_size=2048, context_length=16, d_model=16, n_layers=1, n_heads=2),
                       train=TrainConfig(steps=3, batch_size=2, context_length=16, warmup_steps=1, eval_every=3,
                                         eval_batches=1))


def test_trained_once_per_recipe_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTCOURSE_CACHE", str(tmp_path))
    model, info = pretrain.course_model(TINY, device="cpu", progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("course-model-") and info["step"] == 3
    assert len(info["extra"]["history"]["train_loss"]) == 3 and not model.training

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded, not trained again")

    monkeypatch.setattr(pretrain, "train", no_training)
    again, _ = pretrain.course_model(TINY, device="cpu", progress=False)
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)
    other = pretrain.Recipe(model=TINY.model, train=TINY.train, seed=1)
    assert other.fingerprint("corpus") != TINY.fingerprint("corpus") != TINY.fingerprint("other corpus")
    with pytest.raises(AssertionError, match="loaded, not trained"):
        pretrain.course_model(other, device="cpu", progress=False)  # another recipe: would train a new model
