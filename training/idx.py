"""IDX files (LeCun et al.'s MNIST format) read, written and downloaded with checksums.

MNIST and Fashion-MNIST ship as four gzip'd IDX files. `read_idx` checks the magic number and
the sizes; `download_mnist` fetches into a folder with sha256 checks and never leaves a partial
file behind (tested against a local HTTP server).
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
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch


class DataError(ValueError):
    """A data set is missing, corrupt, or could not be downloaded."""


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


def find_idx(directory: Path, stem: str) -> Path | None:
    """The gzipped file if present, else the un-gzipped one, else None."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def read_images(directory: Path, split: str) -> torch.Tensor:
    """One split's images as (N, 784) float32 intensities in [0, 1], checked against labels."""
    paths = []
    for stem in _SPLIT_STEMS[split]:
        path = find_idx(directory, stem)
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
