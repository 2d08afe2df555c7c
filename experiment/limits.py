"""Bounds on an experiment file's counts and its name, checked before anything allocates.

A count is a size something will allocate (a layer's width, a batch, the points a data set
draws, the trials a sampler lists), so a typo such as `num_samples: 1e12` must fail as one
line at load time, not as an out-of-memory kill minutes later. The bounds sit far above what
any shipped file uses; each applies to one value, not to products of several. The name
becomes a folder under the storage root: it must be one path component.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from objectives.config import ConfigError

# dotted key -> (smallest, largest) allowed; None values (use the default) are not checked
COUNTS: dict[str, tuple[int, int]] = {
    "model.hidden": (1, 1 << 16),
    "model.layers": (1, 64),
    "model.z_dim": (1, 1 << 16),
    "train.steps": (1, 10**9),
    "train.batch_size": (1, 10**6),
    "train.eval_every": (1, 10**9),
    "train.eval_size": (2, 10**7),  # the MMD and MI estimates need two points a side
    "train.nll_train_size": (0, 10**7),
    "train.iw_samples": (1, 10**6),
    "train.disc_steps": (1, 1000),
    "train.threads": (1, 4096),
    "dataset.train_size": (1, 10**8),
    "dataset.test_size": (2, 10**8),  # as train.eval_size: evaluation needs two points
    "search.num_samples": (1, 100_000),
    "search.max_concurrent": (1, 10_000),
    "search.max_failures": (0, 1000),
    "search.population": (1, 4096),
}
AUTO = "search.population"  # the one count that may also be `auto`
MAX_TRIALS = COUNTS["search.num_samples"][1]  # also bounds the grid a grid sampler lists
MAX_ENQUEUED = 1000  # search.enqueue_presets
MAX_NAME_BYTES = 200  # a folder name, with room for `-2` and Tune's suffixes


def check_counts(experiment: Any) -> None:
    """ConfigError for the first count of `COUNTS` outside its bounds."""
    for key, (low, high) in COUNTS.items():
        section, name = key.split(".")
        value = getattr(getattr(experiment, section), name)
        if value is None or isinstance(value, str):  # a default, or population: auto
            continue
        if value < low:
            rule = ("> 0" if low == 1 else f">= {low}") + (" or auto" if key == AUTO else "")
            raise ConfigError(f"{key}: must be {rule}, got {value}")
        if value > high:
            raise ConfigError(f"{key}: at most {high}, got {value}")
    enqueued = len(experiment.search.enqueue_presets)
    if enqueued > MAX_ENQUEUED:
        raise ConfigError(f"search.enqueue_presets: at most {MAX_ENQUEUED} points, got {enqueued}")


def check_name(name: str) -> None:
    """An experiment name is one folder under the storage root: no separators, not `.` or
    `..`, no control characters, not too long for a file system."""
    shown = repr(name)
    if not name.strip():
        raise ConfigError(f"name: must be a non-empty name, got {shown}")
    if "/" in name or "\\" in name:
        raise ConfigError(f"name: must be one folder name, without '/' or '\\', got {shown}")
    if name in (".", ".."):
        raise ConfigError(f"name: {shown} names a folder outside the storage; choose a name")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ConfigError(f"name: control or invisible characters are not allowed, got {shown}")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError(f"name: at most {MAX_NAME_BYTES} bytes, got {len(name.encode())}")
