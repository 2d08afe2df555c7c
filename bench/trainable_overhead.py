"""Overhead of the trainable: samples/s of a population of one (`Trainer.train_steps`) against a
bare PyTorch loop.

Both train the same ELBO network (same layer sizes, the same soft bounds on its log-variances,
same data, same batch size, and the same optimiser: the trainer's fused Adam) in one process,
in interleaved rounds so that machine noise hits both alike; the median over rounds is
reported. The bare loop's tanh is the model's kernel (2σ(2x) - 1), so the ratio measures the
trainable, not the activation. Printed beside: `bare_default_adam`, the bare loop with torch's
default (per-tensor) Adam, what a hand-written loop usually runs; `bare_no_floors`, without
the bounds (the textbook ELBO, a slightly cheaper model); `bare_torch_tanh`, with torch's own
tanh kernel (what `nn.Tanh` gives by hand).
Both sides run with the same torch threads (`--threads`, set for the whole process before
anything runs): a side with more threads would measure the BLAS, not the trainable.
Prints one JSON line: {"ours": samples/s, "bare": samples/s, "ratio": ours/bare, ...}.
Targets and measured figures: docs/BENCHMARKS.md.

    python bench/trainable_overhead.py                         # mog, the paper's 2x1024 network
    python bench/trainable_overhead.py --hidden 128 --steps 300  # configs/mog-elbo.yaml's size

The default is the paper's network for the mixture (Appendix C.1: two hidden layers of 1024).
On small networks the per-step Python overhead of the generic loss weighs more.
    python bench/trainable_overhead.py --dataset mnist --data-dir ../shared/data/mnist-subset-10k \
        --hidden 512 --z-dim 50 --rounds 7 --steps 200
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiment.config import experiment_from_dict  # noqa: E402
from objectives.networks import Tanh  # noqa: E402
from training.trainer import Trainer  # noqa: E402


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers[:-1])  # no activation after the output layer


def floor(value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """A smooth clamp of a log-variance to (low, high), written out as a hand loop would: the
    model's own output layer, written here rather than imported from the trainable."""
    return low + F.softplus((high - low) - F.softplus(high - value))


class BareLoop:
    """The ELBO as one would write it by hand: two MLPs, reparameterisation, analytic KL.

    With `floors` (the default) its log-variances are bounded as the model's are
    (`model.encoder_logvar_min/max`, `model.decoder_logvar_min/max`), so both sides train the
    same network and the ratio is the trainable's overhead alone; without, it is the textbook
    ELBO with unbounded variances (printed beside, as `ratio_vs_no_floors`). Its tanh is the
    model's (`objectives.networks.Tanh`, 2σ(2x) - 1: the same kernel); with `torch_tanh`, torch's
    own, several times slower on this CPU build (`ratio_vs_torch_tanh`)."""

    def __init__(
        self,
        trainer: Trainer,
        seed: int,
        fused: bool = True,
        floors: bool = True,
        torch_tanh: bool = False,
    ) -> None:
        torch.manual_seed(seed)
        (member,) = trainer.members
        e, dataset = member.experiment, member.dataset
        m = e.model
        self.encoder_range = (m.encoder_logvar_min, m.encoder_logvar_max) if floors else None
        self.decoder_range = (m.decoder_logvar_min, m.decoder_logvar_max) if floors else None
        x_dim, z_dim, h, layers = dataset.dim, e.model.z_dim, e.model.hidden, e.model.layers
        self.gaussian = dataset.likelihood == "gaussian"
        activation = nn.Tanh if torch_tanh else Tanh
        self.encoder = mlp([x_dim, *[h] * layers, 2 * z_dim], activation)
        self.decoder = mlp([z_dim, *[h] * layers, (2 if self.gaussian else 1) * x_dim], activation)
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=e.train.lr, fused=fused or None)
        self.batches = dataset.train_batches(
            e.train.batch_size, torch.Generator().manual_seed(seed)
        )

    def train_steps(self, n: int) -> None:
        for _ in range(n):
            x = next(self.batches)
            mu, logvar = self.encoder(x).chunk(2, dim=-1)
            if self.encoder_range is not None:
                logvar = floor(logvar, *self.encoder_range)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            out = self.decoder(z)
            if self.gaussian:
                mean, dec_logvar = out.chunk(2, dim=-1)
                if self.decoder_range is not None:
                    dec_logvar = floor(dec_logvar, *self.decoder_range)
                log_lik = -0.5 * (
                    math.log(2 * math.pi) + dec_logvar + (x - mean) ** 2 * torch.exp(-dec_logvar)
                ).sum(-1)
            else:
                log_lik = -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
            kl = 0.5 * (torch.exp(logvar) + mu**2 - 1 - logvar).sum(-1)
            loss = (kl - log_lik).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mog", choices=["mog", "mnist", "fashion-mnist"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--hidden", type=int, default=1024, help="default: the paper's C.1")
    parser.add_argument("--z-dim", type=int, default=None, help="default: 1 for mog, 50 otherwise")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)  # both sides: the trainer sets the same for its steps
    z_dim = args.z_dim or (1 if args.dataset == "mog" else 50)
    experiment = experiment_from_dict(
        {
            "name": "overhead",
            "dataset": {"name": args.dataset, "data_dir": args.data_dir},
            "model": {"hidden": args.hidden, "layers": 2, "z_dim": z_dim, "activation": "tanh"},
            "objective": {"preset": "elbo"},
            "train": {"batch_size": args.batch_size, "device": "cpu", "steps": 10**9},
        }
    )
    ours = Trainer(experiment, threads=args.threads)
    loops = {
        "ours": ours,
        "bare": BareLoop(ours, seed=1),
        "bare_default_adam": BareLoop(ours, seed=1, fused=False),
        "bare_no_floors": BareLoop(ours, seed=1, floors=False),
        "bare_torch_tanh": BareLoop(ours, seed=1, torch_tanh=True),
    }
    for loop in loops.values():
        loop.train_steps(20)  # warm-up: allocator, Adam state

    rates: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(args.rounds):
        order = list(loops.items())
        for name, loop in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            loop.train_steps(args.steps)
            rates[name].append(args.steps * args.batch_size / (time.perf_counter() - start))
    (member,) = ours.members
    assert member.status == "running", f"the benchmark run diverged: {member.diverged}"
    assert torch.get_num_threads() == ours.threads == args.threads
    result = {
        "bench": "trainable_overhead",
        "dataset": args.dataset,
        "hidden": args.hidden,
        "z_dim": z_dim,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "ours": round(statistics.median(rates["ours"]), 1),
        "bare": round(statistics.median(rates["bare"]), 1),
        "bare_default_adam": round(statistics.median(rates["bare_default_adam"]), 1),
        "bare_no_floors": round(statistics.median(rates["bare_no_floors"]), 1),
        "bare_torch_tanh": round(statistics.median(rates["bare_torch_tanh"]), 1),
    }
    result["ratio"] = round(result["ours"] / result["bare"], 3)
    result["ratio_vs_default_adam"] = round(result["ours"] / result["bare_default_adam"], 3)
    result["ratio_vs_no_floors"] = round(result["ours"] / result["bare_no_floors"], 3)
    result["ratio_vs_torch_tanh"] = round(result["ours"] / result["bare_torch_tanh"], 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
