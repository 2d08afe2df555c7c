"""Shared fixtures, and `require_system`: what a test needs of the machine beyond Python."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import postgres_server
import pytest
import torch

from analysis.png import find_browser
from training.idx import write_idx


def require_system(what: str, package: str, available: bool) -> None:
    """Skip the calling test when `what` is not on this machine, naming the Debian `package`
    that provides it; fail instead under `CI=true`, where .ci/run installs every such
    package, so CI still proves the tests that need them."""
    if available:
        return
    reason = f"needs {what}: not found here (Debian package `{package}`)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> str:
    """A headless Chromium: the dashboard's PNGs and the rendered page (`analysis.png`)."""
    found = find_browser()
    require_system("a Chromium browser", "chromium", found is not None)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/postgres_server.py): its URL."""
    bin_dir = postgres_server.server_bin()
    require_system("a PostgreSQL server (initdb, pg_ctl)", postgres_server.PACKAGE, bool(bin_dir))
    assert bin_dir is not None
    yield from postgres_server.serve(bin_dir)


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
