"""Multi-node placement: a two-node Ray cluster (one process each) with one logical GPU a node.

Trials ask for gpu: 0.5, so Ray packs at most two on each GPU and uses both nodes. The GPUs
are logical: Ray sets CUDA_VISIBLE_DEVICES in the trial, torch (a CPU build here) sees no
CUDA, and `train.device: auto` trains on the CPU.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import yaml
from ray.cluster_utils import Cluster
from test_tune import tiny

import run_search

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one time."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_fractional_gpu_trials_spread_over_both_nodes(
    two_nodes: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Joined with --address (the packages travel as py_modules), 4 trials at gpu 0.5.

    Ray fills the driver's node first and spreads only when a third trial finds it full, so
    the trials must outlast the 1-3 s Tune takes to start the next: at 100 steps one ended
    before the third started and all four ran on the head node (a CI run on 2 cores).
    """
    data = tiny(
        "cluster",
        resources={"cpu": 1, "gpu": 0.5},
        train={"device": "auto", "steps": 1000, "eval_every": 500},
        search={"num_samples": 4, "max_concurrent": 4},
    )
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    argv = ["search", str(path), "--storage", str(tmp_path), "--address", two_nodes.address]
    assert run_search.main(argv) == 0
    assert "no GPU" not in capsys.readouterr().out
    assert not ray.is_initialized()  # the search disconnected; the cluster runs on
    with (tmp_path / "cluster" / "trials.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    nodes = {node.node_id for node in two_nodes.list_all_nodes()}
    placed = [(r["node_id"][:8], r["ended_at"], r["time_s"]) for r in rows]
    assert {r["node_id"] for r in rows} == nodes and len(nodes) == 2, placed
    assert {r["gpu_ids"] for r in rows} == {"0"}  # each node's one logical GPU
    per_gpu: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        end = float(row["ended_at"])
        per_gpu[row["node_id"], row["gpu_ids"]].append((end - float(row["time_s"]), end))
    assert all(max_overlap(spans) <= 2 for spans in per_gpu.values())
