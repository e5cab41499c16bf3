"""``to_device``: small host tensors reach the GPU without a synchronisation (plain copies elsewhere)."""

import pytest
import torch

from breakhis_lit.data.device import to_device


def test_cpu_target_is_a_plain_copy() -> None:
    x = torch.arange(6.0)
    assert to_device(x, torch.device("cpu")) is x
    assert to_device(x, torch.device("meta")).device.type == "meta"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_copy_does_not_synchronise() -> None:
    x = torch.arange(6.0)
    torch.cuda.set_sync_debug_mode("error")  # a synchronising CUDA call raises
    try:
        y = to_device(x, torch.device("cuda"))
        with pytest.raises(RuntimeError, match="synchronizing CUDA operation"):
            x.to("cuda")  # the check itself works: a blocking copy of pageable memory
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert y.is_cuda
    assert torch.equal(y.cpu(), x)
