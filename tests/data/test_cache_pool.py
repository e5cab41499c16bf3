"""The decode pool's start method: fork, except after CUDA is initialised in the process (forkserver)."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from breakhis_lit.data import cache


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and forkserver are Linux start methods here")
def test_fork_unless_cuda_is_initialised(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert cache._pool_context().get_start_method() == "fork"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    ctx = cache._pool_context()
    assert ctx.get_start_method() == "forkserver"
    path = tmp_path / "a.png"
    Image.fromarray(np.full((8, 12, 3), 7, np.uint8)).save(path)
    with ctx.Pool(1) as pool:  # the workers import only the cache module, from the server
        (chunk,) = pool.map(cache._decode_chunk, [[(str(path), 4)]])
    image, digest = chunk[0]
    assert image.shape == (3, 4, 4)
    assert digest == cache.content_digest(path.read_bytes())  # taken while reading the file
