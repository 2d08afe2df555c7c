"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from postgres_server import postgres_url  # noqa: F401  (a throwaway PostgreSQL server)

from training.idx import write_idx


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread per test: small matrices run fastest so, and 2-core CI stays fair."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_idx_dir(
    directory: Path, train: int, test: int, seed: int = 0, suffix: str = ".gz"
) -> Path:
    """A folder of random MNIST-layout IDX files (gzip'd with the default `suffix`):
    `train` and `test` 28x28 images and their labels."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return directory
