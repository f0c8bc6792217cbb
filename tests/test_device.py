import pytest
import torch

from gptcourse.device import ENV_VAR, pick_device


def test_default_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device().type == expected


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert pick_device() == torch.device("cpu")


def test_bad_names_and_missing_devices_get_clear_errors(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "gpu")
    with pytest.raises(ValueError, match="not a device name"):
        pick_device()
    monkeypatch.setenv(ENV_VAR, f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(RuntimeError, match="not available"):
        pick_device()
