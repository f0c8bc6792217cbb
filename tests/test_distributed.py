"""gptcourse.distributed: two processes (torchrun, gloo, CPU) train like one process on the combined batch."""

import pytest
import torch

from gptcourse import distributed
from gptcourse.tolerances import tolerance


def test_two_processes_train_like_one_on_the_combined_batch():
    # float64: the two runs add the same numbers in another order, and in float64 that rounding stays far below the
    # tolerance even after AdamW magnifies it (in float32 it reaches ~1e-5, too close to any sensible limit).
    result = distributed.compare_with_single_process(steps=3, nproc=2, batch_size=8, dtype="float64")
    atol = tolerance(torch.float64)["atol"]
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["max_grad_diff"] <= atol  # the averaged gradient of step 1 is the whole batch's
    assert result["max_abs_diff"] <= atol  # and the weights after 3 steps are the single process's
    # train() takes the loss itself in float32, so the losses agree to float32 rounding.
    torch.testing.assert_close(result["train_loss_ddp"], result["train_loss_single"], **tolerance(torch.float32))

    # Each process really trained on half of each batch: different rows, different losses, averaging to the whole's.
    first, second = result["per_process"]
    assert (first["rows"], second["rows"]) == ([0, 4], [4, 8])
    assert first["batch_shape"] == second["batch_shape"] == [4, 32] and result["batch_shape"] == (8, 32)
    assert abs(first["first_step_loss"] - second["first_step_loss"]) > 1e-3
    mean = (first["first_step_loss"] + second["first_step_loss"]) / 2
    assert mean == pytest.approx(result["train_loss_single"][0], abs=tolerance(torch.float32)["atol"])


def test_the_batch_must_divide_by_the_number_of_processes():
    assert [distributed.rank_rows(8, rank, 2) for rank in (0, 1)] == [slice(0, 4), slice(4, 8)]
    with pytest.raises(ValueError, match=r"batch size \(7\) must divide by the number of processes \(2\).*8"):
        distributed.rank_rows(7, 0, 2)
    with pytest.raises(RuntimeError, match=r"batch size \(7\) must divide"):  # said by the processes too
        distributed.launch(["--steps", "1", "--batch-size", "7", "--device", "cpu"], nproc=2, timeout=120)


def test_without_torchrun_it_says_how_to_launch(monkeypatch, capsys):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        distributed.main(["--steps", "1"])
    assert "torchrun --nproc_per_node 2 -m gptcourse.distributed" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="not a torchrun launch"):
        distributed.setup("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
def test_nccl_on_gpus_trains_like_one_gpu():
    ok, found = distributed.gpu_check()
    assert ok, found
