"""gptcourse.checkpoint: a resumed run continues bit for bit; saving is atomic; nothing is pickled."""

import json
import random

import numpy as np
import pytest
import torch

from gptcourse.checkpoint import load_checkpoint, save_checkpoint


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 3))


def _step(model, optimizer):
    """One training step whose batch and dropout mask come from all three global generators."""
    n = random.randint(4, 8)  # Python's generator picks the batch size
    x = torch.randn(n, 6) + float(np.random.normal())  # PyTorch's and NumPy's pick the data
    loss = model(x).pow(2).mean()  # dropout draws from PyTorch's generator
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_a_resumed_run_continues_bit_for_bit(tmp_path):
    _seed_everything(0)
    model = _model(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    straight = [_step(model, optimizer) for _ in range(6)]

    _seed_everything(0)
    first = _model(1)
    first_optimizer = torch.optim.AdamW(first.parameters(), lr=1e-2, weight_decay=0.1)
    losses = [_step(first, first_optimizer) for _ in range(3)]
    save_checkpoint(tmp_path / "run.safetensors", first, first_optimizer, step=3, extra={"note": "halfway"})

    _seed_everything(123)  # a new process: other weights, other generator states
    resumed = _model(99)
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-2, weight_decay=0.1)
    info = load_checkpoint(tmp_path / "run.safetensors", resumed, resumed_optimizer)
    losses += [_step(resumed, resumed_optimizer) for _ in range(3)]

    assert info == {"step": 3, "extra": {"note": "halfway"}}
    assert losses == straight
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_the_file_is_safetensors_with_json_metadata_and_no_pickle(tmp_path):
    model = _model(0)
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    raw = path.read_bytes()
    header_size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_size])  # the safetensors header is plain JSON
    assert "model.0.weight" in header and json.loads(header["__metadata__"]["gptcourse"])["step"] == 0
    assert b"\x80\x04" not in raw[:8 + header_size]  # no pickle protocol marker in the header
    with pytest.raises(ValueError, match="optimizer"):
        load_checkpoint(path, _model(0), torch.optim.SGD(_model(0).parameters(), lr=0.1))


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, _model(0), step=1)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("gptcourse.checkpoint.save_file", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, _model(5), step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no half-written file left behind


def test_a_file_that_is_not_a_checkpoint_is_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a course checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors", _model(0))
