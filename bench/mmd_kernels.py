"""The MMD choices side by side on batch-sized samples: signal against noise, per unit λ.

For each kernel × bandwidth rule × estimator, over `--batches` fresh batches of n q samples
against n prior draws N(0, I) in d dimensions (d = 50 and n = 100: the Figure 2 setting):
- `noise`: the standard deviation of the estimate at q = p (what λ multiplies for nothing);
- `shift`: the mean estimate minus its mean at q = p, for q = N(δ·1, I);
- `collapse`: the same for q with `--collapsed` dimensions at 0 (a posterior that ignores them);
- their ratios to `noise` (how many batch standard deviations a mismatch is worth);
- `grad_ratio`: ‖∇_q MMD‖ at the shift against the IMQ/twice-dim/unbiased default's.
The last line is one JSON object with every row. Run: .venv/bin/python bench/mmd_kernels.py
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from objectives.divergences import MaximumMeanDiscrepancy


def measure(module: MaximumMeanDiscrepancy, q, p) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimates (batches,) and the mean norm of each batch's gradient in its q samples."""
    q = q.clone().requires_grad_()
    value = module(q, p).estimate  # (batches,)
    (grad,) = torch.autograd.grad(value.sum(), q)
    return value.detach(), grad.flatten(1).norm(dim=1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--shift", type=float, default=0.3)
    parser.add_argument("--collapsed", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    k, n, d = args.batches, args.n, args.dim
    prior = torch.randn(k, n, d, generator=g, dtype=torch.float64)
    same = torch.randn(k, n, d, generator=g, dtype=torch.float64)
    shifted = same + args.shift
    collapsed = same.clone()
    collapsed[..., : args.collapsed] = 0.0
    rows = []
    for kernel, rule, estimator in itertools.product(
        ("imq", "rbf"), ("twice-dim", "dim-squared", "median"), ("unbiased", "biased")
    ):
        module = MaximumMeanDiscrepancy(d, kernel, rule, estimator)
        at_p = module(same, prior).estimate
        moved, grad = measure(module, shifted, prior)
        squashed = module(collapsed, prior).estimate
        noise = float(at_p.std())
        signal, collapse = float(moved.mean() - at_p.mean()), float(squashed.mean() - at_p.mean())
        rows.append(
            {
                "kernel": kernel,
                "bandwidth": rule,
                "estimator": estimator,
                "noise": noise,
                "shift": signal,
                "collapse": collapse,
                "shift_over_noise": signal / noise,
                "collapse_over_noise": collapse / noise,
                "grad": float(grad),
            }
        )
    default = next(r["grad"] for r in rows if (r["kernel"], r["bandwidth"]) == ("imq", "twice-dim"))
    for row in rows:
        row["grad_ratio"] = row.pop("grad") / default
    header = ("kernel", "bandwidth", "estimator", "noise", "shift", "collapse")
    print(" ".join(f"{h:>11}" for h in (*header, "shift/noise", "coll/noise", "grad_ratio")))
    for r in rows:
        cells = [r[h] for h in header] + [
            r["shift_over_noise"],
            r["collapse_over_noise"],
            r["grad_ratio"],
        ]
        print(" ".join(f"{c:>11.4g}" if isinstance(c, float) else f"{c:>11}" for c in cells))
    print(json.dumps({"dim": d, "n": n, "batches": k, "rows": rows}))


if __name__ == "__main__":
    main()
