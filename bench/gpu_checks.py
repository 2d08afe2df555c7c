"""What the trainer does on a GPU, checked in about a minute (bench/gpu.sh runs it).

One JSON line per check: {"check", "device", "status": ok | fail | skipped, "figure"}.
- `presets`: every preset below trains 30 steps on the device (fp32 and, on CUDA, bf16): the
  run ends ok with finite metrics.
- `resume`: a population of 3 (two discriminators each, a cosine schedule) saved at step 20
  and resumed to 40, against 40 uninterrupted steps: the largest parameter difference (on the
  CPU 0 exactly; on CUDA exact only where the kernels are deterministic).
- `cuda-vs-cpu`: one member trained 100 steps on each: the largest relative metric
  difference (two devices round differently; a stated tolerance, not equality).
- `bf16`: fp32 against bf16 autocast, 300 steps of the 2x1024 mixture network: nll of each.
On a machine without CUDA the CUDA-only checks print `skipped` with the reason; exit 0
unless a check that ran failed.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiment.config import Experiment, experiment_from_dict  # noqa: E402
from training.trainer import Trainer  # noqa: E402

PRESETS = [
    {"preset": "elbo"},
    {"preset": "beta-vae", "beta": 0.5, "mi_upper_bound": 1.0, "mi_upper_bound_on": "distortion"},
    {"preset": "infovae", "beta": 1.0, "lambda": 100.0},
    {"preset": "infovae", "lambda": 100.0, "kernel": "rbf", "kernel_bandwidth": "median"},
    {"preset": "kl-infovae"},
    {"preset": "aae"},
    {"preset": "bigan"},
    {"preset": "infogan"},
]
COMPARED = ("nll", "nll_train", "elbo", "rate", "distortion", "mi", "mi_upper")


def experiment(device: str, objective: dict[str, Any], **train: Any) -> Experiment:
    return experiment_from_dict(
        {
            "seed": 7,
            "dataset": {"name": "mog", "train_size": 2000, "test_size": 200},
            "model": {"hidden": train.pop("hidden", 64), "z_dim": 1},
            "objective": objective,
            "train": {"steps": 30, "eval_every": 30, "nll_train_size": 100, "device": device}
            | train,
        }
    )


def final(trainer: Trainer) -> dict[str, Any]:
    return list(trainer.run())[-1][0]


def report(check: str, device: str, ok: bool | None, figure: str) -> bool:
    status = "skipped" if ok is None else ("ok" if ok else "fail")
    print(json.dumps({"check": check, "device": device, "status": status, "figure": figure}))
    return ok is not False


def presets(device: str) -> bool:
    precisions = ["fp32", "bf16"] if device == "cuda" else ["fp32"]
    bad = []
    for objective in PRESETS:
        for precision in precisions:
            metrics = final(Trainer(experiment(device, dict(objective), precision=precision)))
            if metrics["status"] != "ok" or not math.isfinite(metrics["nll"]):
                bad.append(f"{objective['preset']}/{precision}")
    figure = f"{len(PRESETS) * len(precisions) - len(bad)}/{len(PRESETS) * len(precisions)} ok"
    return report("presets", device, not bad, figure + (f"; failed: {bad}" if bad else ""))


def resume(device: str) -> bool:
    objectives = [{"preset": "kl-infovae", "lambda1": 2.0 + k} for k in range(3)]
    schedule = {"kind": "cosine"}
    members = [
        experiment(
            device, o, steps=40, eval_every=20, disc_steps=2, lr_schedule=schedule
        ).with_values({"seed": 20 + k})
        for k, o in enumerate(objectives)
    ]
    whole = Trainer(members)
    final(whole)
    first = Trainer(members)
    next(first.run())
    with tempfile.TemporaryDirectory() as directory:
        first.save_checkpoint(Path(directory))
        again = Trainer(members)
        again.load_checkpoint(Path(directory))
        final(again)
    a, b = whole.model.state_dict(), again.model.state_dict()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    exact_or_cuda = worst == 0.0 or device == "cuda"  # CUDA kernels need not be deterministic
    return report("resume", device, exact_or_cuda, f"max abs param Δ {worst:.3g}")


def cuda_vs_cpu() -> bool:
    if not torch.cuda.is_available():
        return report("cuda-vs-cpu", "cpu", None, "needs CUDA")
    objective = {"preset": "infovae", "beta": 0.5, "lambda": 10.0}
    on = {d: final(Trainer(experiment(d, dict(objective), steps=100))) for d in ("cpu", "cuda")}
    worst = max(abs(on["cuda"][m] - on["cpu"][m]) / max(1.0, abs(on["cpu"][m])) for m in COMPARED)
    return report("cuda-vs-cpu", "cuda", worst < 1e-2, f"max relative metric Δ {worst:.3g}")


def bf16() -> bool:
    if not torch.cuda.is_available():
        return report("bf16", "cpu", None, "needs CUDA (bf16 autocast on tensor cores)")
    nll = {}
    for precision in ("fp32", "bf16"):
        e = experiment("cuda", {"preset": "elbo"}, steps=300, hidden=1024, precision=precision)
        nll[precision] = final(Trainer(e))["nll"]
    ok = all(math.isfinite(v) for v in nll.values())
    return report("bf16", "cuda", ok, f"nll fp32 {nll['fp32']:.4f}, bf16 {nll['bf16']:.4f}")


def main() -> int:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = [presets(device), resume(device), cuda_vs_cpu(), bf16()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
