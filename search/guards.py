"""Checks of a planned search against where it will run, before anything is written.

A search that can never start must say so in one line instead of waiting: a local Ray with
no CPU, a trial asking more CPUs or GPUs than any node has (Tune would wait for them for
ever), a storage root that is a file, a grid too large to list. `before_ray` runs on the
plan before `experiment.yaml` is written; `check_fits` runs once Ray's nodes are known (a
cluster's, or a local Ray that sees fewer cores than the machine has). No Ray here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from experiment.config import ConfigError
from experiment.limits import MAX_TRIALS
from experiment.samplers import SAMPLERS
from search.plan import SearchPlan


def before_ray(plan: SearchPlan, num_cpus: int | None, address: str | None) -> None:
    """ConfigError for a plan that could not run here; nothing has been written yet."""
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--num-cpus: must be >= 1, got {num_cpus} (no trial could start)")
    if not plan.is_remote:
        _check_folder(Path(plan.storage))
    search = plan.experiment.search
    if SAMPLERS[search.sampler].grid and plan.num_samples > MAX_TRIALS:
        raise ConfigError(
            f"search.num_samples: a full grid over {len(plan.space.params)} parameters has "
            f"{plan.num_samples} trials; at most {MAX_TRIALS}"
        )
    if not address:
        cpus = num_cpus or _cores()
        check_fits([{"CPU": cpus}], plan.experiment.resources.cpu, 0.0, "this machine's Ray")


def check_fits(
    nodes: Iterable[Mapping[str, float]], cpu: float, gpu: float, where: str = "the Ray cluster"
) -> None:
    """ConfigError when no node offers `cpu` CPUs and `gpu` GPUs at once (Ray's resource
    names), so that Tune would wait for a trial's resources for ever."""
    nodes = list(nodes)
    if any(n.get("CPU", 0) >= cpu and n.get("GPU", 0) >= gpu for n in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("CPU", 0), n.get("GPU", 0)), default={})
    has = f"{largest.get('CPU', 0):g} CPUs" + (f", {largest['GPU']:g} GPUs" if gpu else "")
    asked = f"resources.cpu={cpu:g}" + (f", resources.gpu={gpu:g}" if gpu else "")
    raise ConfigError(
        f"resources: {asked} per trial, but the largest node of {where} has {has}; "
        "no trial could ever start (lower resources, or --num-cpus / a larger node)"
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _check_folder(root: Path) -> None:
    """The storage root, or the nearest part of it that exists, must be a folder."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"storage: {path} is a file, not a folder (see --storage)")
            return
