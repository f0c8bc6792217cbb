import random

import numpy as np
import pytest
import torch

from gptcourse.seed import exact_gpu_maths, set_seed
from gptcourse.tolerances import assert_close, devices_to_test, tolerance


def test_tolerances_grow_as_precision_shrinks():
    assert tolerance(torch.float64)["atol"] < tolerance(torch.float32)["atol"] < tolerance(torch.bfloat16)["atol"]
    assert tolerance(torch.float32, "cuda")["rtol"] >= tolerance(torch.float32, "cpu")["rtol"]
    with pytest.raises(ValueError, match="tolerances.py"):
        tolerance(torch.int64)


def test_assert_close_uses_the_dtype_tolerance():
    x = torch.ones(3, dtype=torch.float32)
    assert_close(x + 1e-7, x)
    with pytest.raises(AssertionError, match="my message"):
        assert_close(x + 1e-2, x, msg="my message")
    y = torch.ones(3, dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_close(y + 1e-7, y)


def test_devices_start_with_the_cpu():
    devices = devices_to_test()
    assert devices[0].type == "cpu" and len(devices) == 1 + torch.cuda.is_available()


def test_set_seed_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    set_seed(3)
    first = draw()
    set_seed(3)
    assert draw() == first
    exact_gpu_maths()
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_check_close_shows_the_message_and_no_numbers():
    from gptcourse.tolerances import check_close

    expected = torch.tensor([1.2345678, 2.0])
    check_close(expected + 1e-7, expected, "fine")
    with pytest.raises(AssertionError) as info:
        check_close(torch.tensor([9.0, 2.0]), expected, "the first number is wrong")
    assert str(info.value) == "the first number is wrong"
