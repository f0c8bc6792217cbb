"""gptcourse.pretrain: the course model is trained once per recipe, cached outside git, then loaded."""

import pytest
import torch

from gptcourse import pretrain
from gptcourse.model import GPTConfig
from gptcourse.train import TrainConfig

TINY = pretrain.Recipe(model=GPTConfig(vocab_size=2049, context_length=16, d_model=16, n_layers=1, n_heads=2),
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


def test_documents_end_with_endoftext_and_the_model_has_room_for_it():
    train_ids, heldout_ids = pretrain.course_ids()
    eot = pretrain.VOCAB_SIZE  # the one id after the merges
    assert pretrain.Recipe().model.vocab_size == eot + 1
    assert int((train_ids == eot).sum()) > 500 and int((heldout_ids == eot).sum()) > 50
    assert int(train_ids.max()) == eot and int(train_ids.min()) >= 0


def test_the_gpu_size_is_a_bigger_recipe_of_its_own():
    cpu, gpu = pretrain.SIZES["cpu"], pretrain.SIZES["gpu"]
    assert cpu == pretrain.Recipe() and cpu.fingerprint("c") != gpu.fingerprint("c")
    assert gpu.model.d_model > cpu.model.d_model and gpu.story_chars > cpu.story_chars
    assert gpu.train.precision == "bfloat16" and gpu.model.vocab_size == cpu.model.vocab_size
