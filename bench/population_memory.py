"""Memory of a population trial: what K members of a network need, on this device.

For each width and K, a fresh subprocess builds a `Trainer` of K members of the quick demo
(configs/quick.yaml, InfoVAE on the 1-D mixture) at that width and trains 20 steps. Printed
per case (one JSON line): the members' parameters (MiB, fp32), and the peak memory of the
training steps: on CUDA `torch.cuda.max_memory_allocated` (MiB), on a CPU the growth of the
process's peak resident set over its state before the population was built (MiB). From the
largest K it also prints the memory per member and how many members fit in `--budget-gib`
(default: the GPU's total memory, or 8 GiB on a CPU) at that rate.

    python bench/population_memory.py [--widths 64 1024] [--ks 1 16 64] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(width: int, k: int, device: str) -> dict[str, float]:
    """In this process: build K members of width `width`, train 20 steps, report memory."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from population import member_experiments

    from training.trainer import Trainer

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    experiments = member_experiments(k, width, 1, "infovae")
    if device != "auto":
        experiments = [e.with_values({"train.device": device}) for e in experiments]
    population = Trainer(experiments)
    cuda = population.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    population.train_steps(20)
    params = sum(p.numel() for p in population.model.parameters()) * 4 / 2**20
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
        total = 0.0
    return {
        "width": width,
        "k": k,
        "device": population.device.type,
        "params_mib": round(params, 2),
        "peak_mib": round(peak, 1),
        "device_gib": round(total, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--budget-gib", type=float, default=None)
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # child: width k
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.device)))
        return 0
    for width in args.widths:
        cases = []
        for k in sorted(args.ks):
            command = [sys.executable, __file__, "--one", str(width), str(k)]
            command += ["--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            cases.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(cases[-1]), flush=True)
        small, large = cases[0], cases[-1]
        per_member = (large["peak_mib"] - small["peak_mib"]) / max(1, large["k"] - small["k"])
        budget = args.budget_gib or large["device_gib"] or 8.0
        fits = int(budget * 1024 // per_member) if per_member > 0 else None
        summary = {"width": width, "mib_per_member": round(per_member, 2)}
        summary |= {"budget_gib": budget, "members_that_fit": fits}
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
