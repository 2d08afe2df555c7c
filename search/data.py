"""Data sets of the paper's experiments (Section 4, Appendix C).

- ``mog``: the one-dimensional mixture of Section 4.1, q(x) = 1/2 N(-1, 1/4) + 1/2 N(1, 1/4),
  sampled from a seeded generator; its exact density and entropy serve the exact NLL.
- ``mnist`` / ``fashion-mnist``: the standard IDX files (LeCun et al.), intensities in [0, 1].
  As in Appendix C.2 the pixels are Bernoulli: the test set is binarised once with a fixed seed,
  training batches are binarised afresh each time they are drawn (dynamic binarisation).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

DATASET_NAMES = ("mog", "mnist", "fashion-mnist")
LIKELIHOODS = ("gaussian", "bernoulli")


class DataError(ValueError):
    """A data set is missing, corrupt, or could not be downloaded."""


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

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Endless (B, D) batches; each epoch is a fresh permutation drawn from a CPU ``generator``.

        Batches run on across epoch boundaries, so each holds exactly ``batch_size`` rows and each
        point is used once per epoch. Bernoulli data are binarised per batch (Appendix C.2).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pending = torch.empty(0, dtype=torch.long)
        while True:
            while len(pending) < batch_size:
                pending = torch.cat([pending, torch.randperm(len(self.train), generator=generator)])
            index, pending = pending[:batch_size], pending[batch_size:]
            batch = self.train[index]  # (B, D)
            if self.likelihood == "bernoulli":
                batch = torch.bernoulli(batch, generator=generator)
            yield batch


# --- mixture of Gaussians (Section 4.1) ---------------------------------------------------------

MOG_MEANS = (-1.0, 1.0)  # equal weights 1/2
MOG_STD = 0.5  # variance 1/4


def mog_log_density(x: torch.Tensor) -> torch.Tensor:
    """Exact log q(x) of q = 1/2 N(-1, 1/4) + 1/2 N(1, 1/4) (Section 4.1), elementwise."""
    means = torch.tensor(MOG_MEANS, dtype=x.dtype, device=x.device)
    standardised = (x.unsqueeze(-1) - means) / MOG_STD  # (..., 2)
    log_normaliser = math.log(MOG_STD * math.sqrt(2 * math.pi))
    log_components = -0.5 * standardised**2 - log_normaliser + math.log(0.5)
    return torch.logsumexp(log_components, dim=-1)


def mog_entropy(half_width: float = 8.0, points: int = 32_001) -> float:
    """H[q] = -integral of q log q, by the trapezoid rule in float64 (no closed form exists)."""
    x = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    log_q = mog_log_density(x)
    return float(-torch.trapezoid(log_q.exp() * log_q, x))


MOG_ENTROPY = mog_entropy()  # about 1.3585 nats: the best test NLL a model of q can reach


def sample_mog(n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws from the Section 4.1 mixture, as an (n, 1) float32 tensor."""
    component = torch.randint(len(MOG_MEANS), (n,), generator=generator)
    means = torch.tensor(MOG_MEANS)[component]
    return (means + MOG_STD * torch.randn(n, generator=generator)).unsqueeze(1)


# --- IDX files ----------------------------------------------------------------------------------

IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, columns)
LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
_UBYTE = 0x08
_SPLIT_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_FILES = tuple(f"{stem}.gz" for stems in _SPLIT_STEMS.values() for stem in stems)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array in the IDX layout, gzip-compressed when the name ends in ``.gz``."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim == 0:
        raise ValueError(f"write_idx takes a uint8 array of >= 1 dims, got {array.dtype}")
    header = struct.pack(f">I{array.ndim}I", (_UBYTE << 8) | array.ndim, *array.shape)
    payload = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    return path


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read a uint8 IDX file (gzip when named ``.gz``); any defect raises one DataError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read IDX file {path}: {error.strerror or error}") from error
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path} is not a complete gzip file ({error})") from error
    if len(raw) < 4:
        raise DataError(f"{path} is too short for an IDX header ({len(raw)} bytes)")
    (magic,) = struct.unpack_from(">I", raw)
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path} has magic number {magic:#010x}, expected {expected_magic:#010x}")
    if magic >> 8 != _UBYTE:
        raise DataError(f"{path} has magic number {magic:#010x}, not an unsigned-byte IDX file")
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated inside its IDX header ({len(raw)} bytes)")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    expected, found = math.prod(shape), len(raw) - header_size
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"{path} is {problem}: its header promises shape {shape} = {expected} bytes, "
            f"found {found}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    """The gzipped file if present, else the un-gzipped one, else None."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_images(directory: Path, split: str) -> torch.Tensor:
    """One split's images as (N, 784) float32 intensities in [0, 1], checked against labels."""
    paths = []
    for stem in _SPLIT_STEMS[split]:
        path = _find_idx(directory, stem)
        if path is None:
            raise DataError(
                f"missing {directory / stem}.gz (or un-gzipped {stem}); expected the IDX files "
                f"{', '.join(IDX_FILES)} in {directory}"
            )
        paths.append(path)
    images, labels = read_idx(paths[0], IMAGE_MAGIC), read_idx(paths[1], LABEL_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{paths[0]} holds images of shape {images.shape[1:]}, expected 28x28")
    if len(labels) != len(images):
        raise DataError(f"{paths[0]} has {len(images)} images but {paths[1]} {len(labels)} labels")
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / np.float32(255))


# --- download (MNIST) ---------------------------------------------------------------------------

MNIST_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# sha256 of the standard files, as listed in torchvision's dataset registry (pytorch/vision,
# torchvision/prototype/datasets/_builtin/mnist.py) and, identically, in independent loaders.
MNIST_SHA256 = dict(
    zip(
        IDX_FILES,  # train images, train labels, t10k images, t10k labels
        (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
        strict=True,
    )
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, out: BinaryIO, timeout: float) -> tuple[int, int | None]:
    """Stream ``url`` into ``out``; return (bytes received, Content-Length or None)."""
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            while chunk := response.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as error:
        error.close()
        raise DataError(f"could not download {url}: {error}") from error
    except (OSError, http.client.HTTPException) as error:
        raise DataError(f"could not download {url}: {getattr(error, 'reason', error)}") from error
    return received, int(length) if length is not None else None


def _download_file(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Fetch into a temporary file beside ``target``; rename only once every check passes."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            received, length = _fetch(url, out, timeout)
        if length is not None and received != length:
            raise DataError(
                f"download of {url} is truncated: received {received} of {length} bytes "
                "(Content-Length); nothing was saved"
            )
        if target.suffix == ".gz":
            try:
                with gzip.open(temporary) as stream:
                    while stream.read(1 << 20):
                        pass
            except (OSError, EOFError, zlib.error) as error:
                raise DataError(
                    f"download of {url} is not a complete gzip file ({error})"
                ) from error
        found = _sha256(temporary)
        if found != sha256:
            raise DataError(
                f"checksum mismatch for {url}: sha256 {found}, expected {sha256}; nothing was saved"
            )
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def download_mnist(
    data_dir: str | Path,
    *,
    base_url: str = MNIST_BASE_URL,
    checksums: Mapping[str, str] = MNIST_SHA256,
    timeout: float = 30.0,
) -> Path:
    """Fetch the four MNIST IDX files into ``data_dir``, each verified by sha256; return the dir.

    Files already present with the right checksum are kept. A failed file leaves no partial or
    temporary file behind (files verified before it stay).
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for file_name, sha256 in checksums.items():
        target = directory / file_name
        if not (target.is_file() and _sha256(target) == sha256):
            _download_file(f"{base_url.rstrip('/')}/{file_name}", target, sha256, timeout)
    return directory


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
        if any(_find_idx(directory, file[: -len(".gz")]) is None for file in IDX_FILES):
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
    train = _first(_read_images(directory, "train"), train_size, "train_size", f"{directory} train")
    test = _first(_read_images(directory, "test"), test_size, "test_size", f"{directory} test")
    test = torch.bernoulli(test, generator=_generator(seed, _TEST_BINARISATION_STREAM))
    return Dataset(name, train, test, "bernoulli")
