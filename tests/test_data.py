"""Tests for search/data.py: the Section 4.1 mixture, IDX reading, binarisation, download."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_idx_dir

from training import data
from training.data import Dataset, load_dataset
from training.idx import (
    IDX_FILES,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    DataError,
    download_mnist,
    read_idx,
    write_idx,
)
from training.mog import MOG_ENTROPY, mog_log_density, sample_mog

REPO_ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 20, 10


def write_fixture_idx(directory: Path, suffix: str = ".gz") -> None:
    """Four small IDX files (N_TRAIN / N_TEST random 28x28 digits) in the MNIST layout."""
    write_idx_dir(directory, N_TRAIN, N_TEST, suffix=suffix)


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    write_fixture_idx(tmp_path / "idx")
    return tmp_path / "idx"


# --- mixture of Gaussians -------------------------------------------------------------------------


def test_mog_is_seeded() -> None:
    first, again, other = (load_dataset("mog", seed=s) for s in (3, 3, 4))
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.equal(first.train, other.train)
    assert not torch.equal(first.train[: len(first.test)], first.test)
    assert first.train.shape == (20_000, 1) and first.test.shape == (2_000, 1)
    assert first.train.dtype == torch.float32 and first.dim == 1
    assert first.likelihood == "gaussian" and first.name == "mog"


def test_mog_sizes_and_moments() -> None:
    mog = load_dataset("mog", seed=0, train_size=50_000, test_size=7)
    assert mog.test.shape == (7, 1)
    # mean 0, variance = component variance 1/4 + variance of the means 1
    assert abs(mog.train.mean().item()) < 0.03
    assert mog.train.var().item() == pytest.approx(1.25, abs=0.04)
    with pytest.raises(ValueError, match="must be >= 1"):
        load_dataset("mog", train_size=0)


def test_mog_log_density_closed_form_and_normalised() -> None:
    def normal(x: float, mean: float) -> float:
        return math.exp(-((x - mean) ** 2) / (2 * 0.25)) / math.sqrt(2 * math.pi * 0.25)

    x = torch.tensor([-2.0, -1.0, 0.0, 0.3, 1.0], dtype=torch.float64)
    expected = [math.log(0.5 * normal(v, -1.0) + 0.5 * normal(v, 1.0)) for v in x.tolist()]
    assert mog_log_density(x).tolist() == pytest.approx(expected, rel=1e-12)
    assert mog_log_density(torch.zeros(3, 4)).shape == (3, 4)
    grid = torch.linspace(-8, 8, 20_001, dtype=torch.float64)
    assert torch.trapezoid(mog_log_density(grid).exp(), grid).item() == pytest.approx(1, abs=1e-9)


def test_mog_entropy_matches_monte_carlo() -> None:
    assert pytest.approx(1.3585, abs=1e-3) == MOG_ENTROPY
    generator = torch.Generator().manual_seed(0)
    x = sample_mog(8_000_000, generator).double()
    monte_carlo = -mog_log_density(x).mean().item()  # standard error about 2e-4
    assert monte_carlo == pytest.approx(MOG_ENTROPY, abs=1e-3)


# --- batches --------------------------------------------------------------------------------------


def test_train_batches_cover_each_epoch_and_are_seeded() -> None:
    dataset = Dataset("mog", torch.arange(12.0).unsqueeze(1), torch.zeros(2, 1), "gaussian")
    batches = list(islice(dataset.train_batches(4, torch.Generator().manual_seed(1)), 6))
    assert all(batch.shape == (4, 1) for batch in batches)
    for epoch in (batches[:3], batches[3:]):
        assert sorted(torch.cat(epoch).squeeze(1).tolist()) == list(range(12))
    assert not torch.equal(torch.cat(batches[:3]), torch.cat(batches[3:]))  # reshuffled
    again = islice(dataset.train_batches(4, torch.Generator().manual_seed(1)), 6)
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))


def test_train_batches_larger_than_dataset() -> None:
    dataset = Dataset("mog", torch.arange(5.0).unsqueeze(1), torch.zeros(1, 1), "gaussian")
    batches: Iterator[torch.Tensor] = dataset.train_batches(7, torch.Generator().manual_seed(0))
    assert next(batches).shape == (7, 1)
    with pytest.raises(ValueError, match="batch_size"):
        next(dataset.train_batches(0, torch.Generator()))


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_stacked_batches_are_each_streams_own_draws(likelihood: str) -> None:
    """`StackedBatches` gives exactly the batches and stream states of `next()` on each stream,
    across epoch ends (7 rows, batches of 3), on each of its paths: one shared tensor, small
    tensors of one shape (concatenated, as the mixture's per-seed data), and one by one (over
    the copy limit)."""
    sets = [Dataset("mnist", torch.rand(7, 5), torch.zeros(1, 5), likelihood) for _ in range(3)]

    def streams(shared: bool) -> list[data.BatchStream]:
        chosen = [sets[0]] * 3 if shared else sets
        return [d.train_batches(3, torch.Generator().manual_seed(s)) for s, d in enumerate(chosen)]

    for shared, limit in ((True, 2**20), (False, 2**20), (False, 0)):
        alone = streams(shared)
        stacked = data.StackedBatches(streams(shared), concat_bytes=limit)
        assert (stacked.source is None) == (limit == 0)
        for _ in range(5):
            batch = next(stacked)
            assert batch.shape == (3, 3, 5)
            assert torch.equal(batch, torch.stack([next(s) for s in alone]))
        for a, b in zip(stacked.streams, alone, strict=True):
            assert torch.equal(a.pending, b.pending)
            assert torch.equal(a.index_generator.get_state(), b.index_generator.get_state())
    assert next(data.StackedBatches(streams(True)[:1])).shape == (1, 3, 5)


def test_dynamic_binarisation_matches_intensities() -> None:
    intensities = torch.linspace(0, 1, 784).repeat(8, 1)  # (8, 784)
    dataset = Dataset("mnist", intensities, torch.zeros(1, 784), "bernoulli")
    batches = torch.cat(list(islice(dataset.train_batches(16, torch.Generator()), 250)))
    assert set(batches.unique().tolist()) == {0.0, 1.0}
    assert batches.mean(0).sub(intensities[0]).abs().max().item() < 0.05  # 4000 draws a pixel
    first, second = islice(dataset.train_batches(8, torch.Generator()), 2)
    assert not torch.equal(first, second)  # fresh binarisation each draw


def test_dataset_validates() -> None:
    with pytest.raises(ValueError, match="likelihood"):
        Dataset("mog", torch.zeros(2, 1), torch.zeros(2, 1), "poisson")
    with pytest.raises(ValueError, match="float32"):
        Dataset("mog", torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, 1), "gaussian")
    with pytest.raises(ValueError, match="D=1"):
        Dataset("mog", torch.zeros(2, 1), torch.zeros(2, 3), "gaussian")


# --- IDX files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path: Path, suffix: str, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(tmp_path / f"array{suffix}", array)
    assert np.array_equal(read_idx(path), array)
    raw = path.read_bytes()
    header = gzip.decompress(raw) if suffix else raw
    assert header[:4] == bytes([0, 0, 0x08, len(shape)])
    assert int.from_bytes(header[4:8], "big") == shape[0]
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "bad.gz", array.astype(np.int32))


def test_images_load_as_intensities(idx_dir: Path) -> None:
    dataset = load_dataset("mnist", str(idx_dir))
    raw = read_idx(idx_dir / "train-images-idx3-ubyte.gz", IMAGE_MAGIC)
    assert dataset.train.shape == (N_TRAIN, 784) and dataset.test.shape == (N_TEST, 784)
    assert dataset.train.dtype == dataset.test.dtype == torch.float32
    assert torch.allclose(dataset.train, torch.from_numpy(raw.reshape(N_TRAIN, 784) / 255).float())
    assert set(dataset.test.unique().tolist()) <= {0.0, 1.0}
    assert dataset.likelihood == "bernoulli" and dataset.dim == 784


def test_ungzipped_files_are_read(tmp_path: Path, idx_dir: Path) -> None:
    write_fixture_idx(tmp_path / "raw", suffix="")
    raw = load_dataset("mnist", str(tmp_path / "raw"))
    assert torch.equal(raw.train, load_dataset("mnist", str(idx_dir)).train)


def test_test_binarisation_fixed_across_loads(idx_dir: Path) -> None:
    first, again, other = (load_dataset("mnist", str(idx_dir), seed=s).test for s in (0, 0, 1))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_sizes_truncate(idx_dir: Path) -> None:
    full = load_dataset("mnist", str(idx_dir))
    small = load_dataset("mnist", str(idx_dir), train_size=5, test_size=3)
    assert torch.equal(small.train, full.train[:5]) and small.test.shape == (3, 784)
    with pytest.raises(ValueError, match="train_size=21"):
        load_dataset("mnist", str(idx_dir), train_size=21)


def test_bad_magic(idx_dir: Path) -> None:
    path = idx_dir / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros(5, np.uint8))  # a labels file where images belong
    with pytest.raises(DataError, match=r"magic number 0x00000801, expected 0x00000803") as info:
        load_dataset("mnist", str(idx_dir))
    assert str(path) in str(info.value)
    assert read_idx(path, LABEL_MAGIC).shape == (5,)


def test_truncated_payload(idx_dir: Path) -> None:
    path = idx_dir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataError, match=r"truncated.*7840 bytes, found 7740") as info:
        load_dataset("mnist", str(idx_dir))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "damage",
    [lambda raw: raw[: len(raw) // 2], lambda raw: b"not gzip at all"],
    ids=["cut-gzip", "not-gzip"],
)
def test_broken_gzip(idx_dir: Path, damage) -> None:
    path = idx_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match="not a complete gzip file") as info:
        load_dataset("mnist", str(idx_dir))
    assert str(path) in str(info.value)


def test_label_count_mismatch(idx_dir: Path) -> None:
    write_idx(idx_dir / "train-labels-idx1-ubyte.gz", np.zeros(N_TRAIN - 1, np.uint8))
    with pytest.raises(DataError, match=f"{N_TRAIN} images but .* {N_TRAIN - 1} labels"):
        load_dataset("mnist", str(idx_dir))


def test_missing_directory_names_path_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset("mnist", str(missing))
    message = str(info.value)
    assert str(missing) in message
    assert "--set dataset.data_dir=PATH" in message and "dataset.download=true" in message
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", str(missing))


def test_missing_file_names_it(idx_dir: Path) -> None:
    (idx_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing .*t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", str(idx_dir))


def test_default_directories(
    tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", idx_dir)
    assert load_dataset("fashion-mnist").name == "fashion-mnist"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data/mnist does not exist"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_real_mnist_subset() -> None:
    # a relative INFOAE_MNIST_DIR is taken from the repo root; absolute ones stand as given
    directory = REPO_ROOT / os.environ.get("INFOAE_MNIST_DIR", "../shared/data/mnist-subset-10k")
    if not directory.is_dir():
        pytest.skip(f"real MNIST subset not found at {directory} (set INFOAE_MNIST_DIR)")
    mnist = load_dataset("mnist", str(directory))
    assert mnist.train.shape == (8000, 784) and mnist.test.shape == (2000, 784)
    assert mnist.train.min() >= 0 and mnist.train.max() <= 1
    assert 0.1 < mnist.train.mean().item() < 0.15  # MNIST's mean intensity is about 0.13
    assert set(mnist.test.unique().tolist()) == {0.0, 1.0}
    assert 0.1 < mnist.test.mean().item() < 0.15


# --- download -------------------------------------------------------------------------------------


@dataclass
class FileServer:
    """A local HTTP server for the fixture files; ``short`` names are sent half-length."""

    files: dict[str, bytes]
    url: str = ""
    short: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def checksums(self) -> dict[str, str]:
        return {name: hashlib.sha256(body).hexdigest() for name, body in self.files.items()}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    write_fixture_idx(tmp_path / "served")
    served = FileServer({name: (tmp_path / "served" / name).read_bytes() for name in IDX_FILES})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            served.requests.append(name)
            if name not in served.files:
                self.send_error(404)
                return
            body = served.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if name in served.short else body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_success_and_skip(tmp_path: Path, server: FileServer) -> None:
    target = tmp_path / "downloaded"
    assert download_mnist(target, base_url=server.url, checksums=server.checksums()) == target
    assert sorted(os.listdir(target)) == sorted(IDX_FILES)
    assert all((target / name).read_bytes() == body for name, body in server.files.items())
    assert load_dataset("mnist", str(target)).train.shape == (N_TRAIN, 784)
    server.requests.clear()
    download_mnist(target, base_url=server.url, checksums=server.checksums())
    assert server.requests == []  # present with the right checksum: not fetched again


def test_load_dataset_downloads_missing_files(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "MNIST_BASE_URL", server.url)
    monkeypatch.setattr(data, "MNIST_SHA256", server.checksums())
    dataset = load_dataset("mnist", str(tmp_path / "fresh"), download=True)
    assert dataset.test.shape == (N_TEST, 784)
    with pytest.raises(DataError, match="only available for mnist"):
        load_dataset("fashion-mnist", str(tmp_path / "fresh"), download=True)


def test_download_wrong_checksum(tmp_path: Path, server: FileServer) -> None:
    checksums = server.checksums() | {IDX_FILES[0]: "0" * 64}
    with pytest.raises(DataError, match=f"checksum mismatch for {server.url}{IDX_FILES[0]}"):
        download_mnist(tmp_path / "out", base_url=server.url, checksums=checksums)
    assert os.listdir(tmp_path / "out") == []


def test_download_failure_keeps_only_verified_files(tmp_path: Path, server: FileServer) -> None:
    checksums = server.checksums() | {IDX_FILES[-1]: "0" * 64}
    with pytest.raises(DataError, match="checksum mismatch"):
        download_mnist(tmp_path / "out", base_url=server.url, checksums=checksums)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(IDX_FILES[:-1])


def test_download_short_body(tmp_path: Path, server: FileServer) -> None:
    server.short.add(IDX_FILES[0])
    with pytest.raises(DataError, match=r"truncated: received \d+ of \d+ bytes") as info:
        download_mnist(tmp_path / "out", base_url=server.url, checksums=server.checksums())
    assert f"{server.url}{IDX_FILES[0]}" in str(info.value)
    assert os.listdir(tmp_path / "out") == []


def test_download_truncated_gzip(tmp_path: Path, server: FileServer) -> None:
    body = server.files[IDX_FILES[0]]
    server.files[IDX_FILES[0]] = body[: len(body) // 2]  # complete HTTP body, cut gzip stream
    with pytest.raises(DataError, match="not a complete gzip file"):
        download_mnist(tmp_path / "out", base_url=server.url, checksums=server.checksums())
    assert os.listdir(tmp_path / "out") == []


def test_download_not_found(tmp_path: Path, server: FileServer) -> None:
    with pytest.raises(DataError, match=f"could not download {server.url}extra.gz: .*404"):
        download_mnist(tmp_path / "out", base_url=server.url, checksums={"extra.gz": "0" * 64})
    assert os.listdir(tmp_path / "out") == []


def test_download_server_down(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mnist/"
    with pytest.raises(DataError, match=f"could not download {url}{IDX_FILES[0]}: .*refused"):
        download_mnist(tmp_path / "out", base_url=url, timeout=5)
    assert os.listdir(tmp_path / "out") == []
