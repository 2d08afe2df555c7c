"""Data sets of the paper's experiments (Section 4, Appendix C).

- ``mog``: the one-dimensional mixture of Section 4.1, q(x) = 1/2 N(-1, 1/4) + 1/2 N(1, 1/4),
  sampled from a seeded generator; its exact density and entropy serve the exact NLL.
- ``mnist`` / ``fashion-mnist``: the standard IDX files (LeCun et al.), intensities in [0, 1].
  As in Appendix C.2 the pixels are Bernoulli: the test set is binarised once with a fixed seed,
  training batches are binarised afresh each time they are drawn (dynamic binarisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.idx import (
    IDX_FILES,
    MNIST_BASE_URL,
    MNIST_SHA256,
    DataError,
    download_mnist,
    find_idx,
    read_images,
)
from training.mog import sample_mog

__all__ = ["BatchStream", "DataError", "Dataset", "StackedBatches", "load_dataset"]

DATASET_NAMES = ("mog", "mnist", "fashion-mnist")
LIKELIHOODS = ("gaussian", "bernoulli")


@dataclass(frozen=True)
class Dataset:
    """A train/test split and the decoder likelihood that fits it."""

    name: str  # "mog" | "mnist" | "fashion-mnist"
    train: torch.Tensor  # (N, D) float32; images as intensities in [0, 1], not binarised
    test: torch.Tensor  # (M, D) float32; images binarised once, with a fixed seed
    likelihood: str  # "gaussian" | "bernoulli"

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        for split, data in (("train", self.train), ("test", self.test)):
            if data.ndim != 2 or data.dtype != torch.float32 or len(data) == 0:
                raise ValueError(
                    f"{split} must be a non-empty (N, D) float32 tensor, "
                    f"got shape {tuple(data.shape)} and dtype {data.dtype}"
                )
        if self.train.shape[1] != self.test.shape[1]:
            raise ValueError(f"train has D={self.dim} but test has D={self.test.shape[1]}")

    @property
    def dim(self) -> int:
        """D, the size of one data point (1 for mog, 784 for images)."""
        return self.train.shape[1]

    def train_batches(self, batch_size: int, generator: torch.Generator) -> BatchStream:
        """Endless (B, D) batches drawn with a CPU ``generator`` (see `BatchStream`)."""
        return BatchStream(self, batch_size, generator)


class BatchStream:
    """Endless (B, D) training batches, with a state that checkpoints (a generator cannot).

    Each epoch is a fresh permutation drawn from ``index_generator`` (always on the CPU);
    batches run on across epoch boundaries, so each holds exactly ``batch_size`` rows and each
    point is used once per epoch. Bernoulli data are binarised per batch (Appendix C.2) with
    ``binary_generator`` (default: the index generator; on CUDA a generator of that device).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        index_generator: torch.Generator,
        device: torch.device | str = "cpu",
        binary_generator: torch.Generator | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.train = dataset.train.to(device)  # (N, D)
        self.binarise = dataset.likelihood == "bernoulli"
        self.batch_size = batch_size
        self.index_generator = index_generator
        self.binary_generator = binary_generator or index_generator
        self.pending = torch.empty(0, dtype=torch.long)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> torch.Tensor:
        return self.finish(self.train[self.take().to(self.train.device)])  # (B, D)

    def take(self) -> torch.Tensor:
        """The indices of the next batch, (B,) on the CPU, drawn as `__next__` draws them."""
        while len(self.pending) < self.batch_size:
            order = torch.randperm(len(self.train), generator=self.index_generator)
            self.pending = torch.cat([self.pending, order])
        index, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
        return index

    def finish(self, batch: torch.Tensor) -> torch.Tensor:
        """The rows at `take`'s indices as `__next__` returns them: binarised if Bernoulli."""
        if self.binarise:
            return torch.bernoulli(batch, generator=self.binary_generator)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending.clone(),
            "index_generator": self.index_generator.get_state(),
            "binary_generator": self.binary_generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pending = state["pending"].clone()
        self.index_generator.set_state(state["index_generator"])
        self.binary_generator.set_state(state["binary_generator"])


class StackedBatches:
    """One batch from each of K streams, stacked (K, B, D): the same rows and draws as `next()`
    on each in turn, gathered with one index op instead of K (a population's step).

    Streams over one training tensor (image data, shared by the members) index it directly;
    streams over small tensors of one shape (the mixture, drawn from each member's seed) index
    their concatenation, made once, with each member's indices offset to its own rows; others
    (large, or of other shapes) are drawn one by one."""

    def __init__(self, streams: Sequence[BatchStream], concat_bytes: int = 64 * 2**20) -> None:
        """`concat_bytes`: the most training data copied into one tensor to gather from."""
        self.streams = list(streams)
        first = self.streams[0]
        trains = [s.train for s in self.streams]
        self.source: torch.Tensor | None = None
        self.offsets: torch.Tensor | None = None
        if any(s.batch_size != first.batch_size for s in self.streams) or len(trains) == 1:
            return
        if all(t is trains[0] for t in trains):
            self.source = trains[0]
        elif len({t.shape for t in trains}) == 1 and (
            sum(t.numel() * t.element_size() for t in trains) <= concat_bytes
        ):
            self.source = torch.cat(trains)  # (K N, D): member k's rows from k N
            starts = torch.arange(len(trains)) * len(trains[0])
            self.offsets = starts.repeat_interleave(first.batch_size)

    def __iter__(self) -> StackedBatches:
        return self

    def __next__(self) -> torch.Tensor:
        if len(self.streams) == 1:
            return next(self.streams[0])[None]  # (1, B, D), a view
        if self.source is None:
            return torch.stack([next(s) for s in self.streams])
        index = torch.cat([s.take() for s in self.streams])
        if self.offsets is not None:
            index += self.offsets
        rows = self.source[index.to(self.source.device)].view(len(self.streams), -1, self.dim)
        if not self.streams[0].binarise:
            return rows
        return torch.stack([s.finish(part) for s, part in zip(self.streams, rows, strict=True)])

    @property
    def dim(self) -> int:
        return self.streams[0].train.shape[1]


# --- entry point --------------------------------------------------------------------------------

MOG_TRAIN_SIZE, MOG_TEST_SIZE = 20_000, 2_000
MNIST_DEFAULT_DIR = Path("data/mnist")
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
_MOG_TRAIN_STREAM, _MOG_TEST_STREAM, _TEST_BINARISATION_STREAM = 0, 1, 2


def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one use of ``seed``, independent of its other uses."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _first(data: torch.Tensor, size: int | None, key: str, name: str) -> torch.Tensor:
    if size is None:
        return data
    if not 1 <= size <= len(data):
        raise ValueError(f"{key}={size} is out of range: {name} has {len(data)} points")
    return data[:size]


def load_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    download: bool = False,
) -> Dataset:
    """Load ``mog`` (generated; ``data_dir`` unused) or ``mnist`` / ``fashion-mnist`` (IDX files).

    ``train_size`` / ``test_size`` keep the first points (mog: how many to draw). With
    ``download``, missing MNIST files are fetched into ``data_dir`` first.
    """
    if name == "mog":
        train_n = MOG_TRAIN_SIZE if train_size is None else train_size
        test_n = MOG_TEST_SIZE if test_size is None else test_size
        if min(train_n, test_n) < 1:
            raise ValueError(f"mog train_size and test_size must be >= 1, got {train_n}, {test_n}")
        train = sample_mog(train_n, _generator(seed, _MOG_TRAIN_STREAM))
        test = sample_mog(test_n, _generator(seed, _MOG_TEST_STREAM))
        return Dataset(name, train, test, "gaussian")
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if data_dir is not None:
        directory = Path(data_dir)
    else:
        directory = MNIST_DEFAULT_DIR if name == "mnist" else FASHION_MNIST_SYSTEM_DIR
    if download:
        if name != "mnist":
            raise DataError(f"download is only available for mnist, not {name}")
        if any(find_idx(directory, file[: -len(".gz")]) is None for file in IDX_FILES):
            download_mnist(directory, base_url=MNIST_BASE_URL, checksums=MNIST_SHA256)
    if not directory.is_dir():
        hint = (
            "--set dataset.download=true to fetch it"
            if name == "mnist"
            else "apt-get install dataset-fashion-mnist to install it there"
        )
        raise DataError(
            f"{name} data directory {directory} does not exist; pass "
            f"--set dataset.data_dir=PATH (a folder with the IDX files), or {hint}"
        )
    train = _first(read_images(directory, "train"), train_size, "train_size", f"{directory} train")
    test = _first(read_images(directory, "test"), test_size, "test_size", f"{directory} test")
    test = torch.bernoulli(test, generator=_generator(seed, _TEST_BINARISATION_STREAM))
    return Dataset(name, train, test, "bernoulli")
