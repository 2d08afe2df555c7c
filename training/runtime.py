"""Process-wide torch settings, set for one piece of work and restored after it.

torch keeps its thread count, its TF32 switches and its global random stream per process. Ray
reuses a trial's process for the next trial (`reuse_actors`), and tests run many trainers in
one process, so a trainer sets these only while it works (`torch_settings`) and leaves what it
found. Oversubscribed threads are costly: a 2-thread loop ran 38x slower here while another
process held one of the two cores, so each trial gets exactly the CPUs Ray granted it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def machine_threads() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or Ray's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a device is a ValueError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


@contextmanager
def torch_settings(threads: int, device: torch.device) -> Iterator[None]:
    """`threads` intra-op threads and, on CUDA, TF32 matmuls, until the block ends."""
    saved = (
        torch.get_num_threads(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    if threads != saved[0]:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        if torch.get_num_threads() != saved[0]:
            torch.set_num_threads(saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global random stream seeded with `seed` inside the block, restored after it
    (network initialisation draws from it)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
