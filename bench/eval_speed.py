"""Throughput of the importance-sampled test NLL (paper Appendix C.2) on an MNIST-sized model.

Times `training.metrics.log_marginal_importance` with K importance samples per test point on
an untrained encoder/decoder of the given size (speed does not depend on the weights) and
prints one JSON line: {"points_per_s": ..., "k": K, ...}.

    python bench/eval_speed.py                                  # 100 points, K = 1000 (< 1 min)
    python bench/eval_speed.py --points 200 --hidden 1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from objectives.config import ModelConfig  # noqa: E402
from objectives.networks import InfoAEModel  # noqa: E402
from training.metrics import log_marginal_importance  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100, help="test points")
    parser.add_argument("--k", type=int, default=1000, help="importance samples per point")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--x-dim", type=int, default=784)
    parser.add_argument("--chunk-points", type=int, default=100)
    parser.add_argument("--chunk-samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = ModelConfig(hidden=args.hidden, layers=2, z_dim=args.z_dim, activation="tanh")
    model = InfoAEModel(args.x_dim, config, "bernoulli").to(device).eval()
    generator = torch.Generator(device).manual_seed(0)
    x = torch.bernoulli(
        torch.full((args.points, args.x_dim), 0.2, device=device), generator=generator
    )

    def run(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return log_marginal_importance(
                model.encoder.encode,
                model.decoder.log_prob,
                points,
                args.k,
                generator,
                chunk_points=args.chunk_points,
                chunk_samples=args.chunk_samples,
            )

    run(x[:2])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    nll = -run(x).mean()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "bench": "eval_speed",
        "k": args.k,
        "points": args.points,
        "hidden": args.hidden,
        "z_dim": args.z_dim,
        "x_dim": args.x_dim,
        "threads": args.threads,
        "device": str(device),
        "seconds": round(seconds, 3),
        "points_per_s": round(args.points / seconds, 3),
        "decoder_evals_per_s": round(args.points * args.k / seconds, 1),
        "nll": round(float(nll), 3),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
