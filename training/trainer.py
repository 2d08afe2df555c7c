"""Framework-free training of one member of the family; no Ray here (DESIGN.md).

A `Trainer` owns everything one run needs: the data stream, the model (encoder q(z|x), decoder
p(x|z)), the compiled objective as a `FamilyLoss` (one loss per parameter group: "model" for
p and q, "disc:<term>" per discriminator), one Adam per group, and the random generators.
A step is one shared forward pass, one backward per group onto that group's own parameters,
then every optimiser steps. The loop never special-cases a model: the Lagrangian is data.

The objective comes compiled with the experiment (`Experiment.compiled`, computed once). Torch's
process-wide settings (threads, TF32, the global seed) are set only while the trainer works and
restored after (`training.runtime`): a process that runs several trainers, as Ray's
reused actors and the tests do, sees no trace of an earlier one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiment.config import METRICS, Experiment
from objectives.config import ConfigError
from objectives.dual import DualAscent
from objectives.estimators import FamilyLoss
from objectives.implicit import implicit_encoder_form
from objectives.networks import InfoAEModel
from training.data import BatchStream, DataError, Dataset, load_dataset
from training.evaluation import evaluate_model, training_subset
from training.mog import MOG_ENTROPY
from training.runtime import machine_threads, resolve_device, seeded, torch_settings

CHECKPOINT_FILE = "trainer.pt"
_DATA_STREAM, _SAMPLING_STREAM, _EVAL_STREAM, _TRAIN_SUBSET_STREAM = 10, 11, 12, 13  # seed uses


def seed_for(seed: int, stream: int, *extra: int) -> int:
    """An independent 63-bit seed for one use of the experiment seed (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, stream, *extra]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def load_experiment_dataset(experiment: Experiment) -> Dataset:
    """The experiment's data set; a relative `data_dir` is read from the working directory."""
    d = experiment.dataset
    data_dir = str(Path(d.data_dir).expanduser()) if d.data_dir else None
    try:
        return load_dataset(
            d.name,
            data_dir,
            seed=experiment.seed,
            train_size=d.train_size,
            test_size=d.test_size,
            download=d.download,
        )
    except DataError:
        raise
    except ValueError as error:  # sizes out of range
        raise ConfigError(f"dataset: {error}") from None


class Trainer:
    """One run of one objective: `train_steps`, `evaluate`, checkpoints, and `run()`."""

    def __init__(self, experiment: Experiment, *, threads: int | None = None):
        self.experiment = experiment
        # the CPUs granted (a Ray trial passes its share), else the file's, else the machine's
        self.threads = threads or experiment.train.threads or machine_threads()
        try:
            self.device = resolve_device(experiment.train.device)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        seed = experiment.seed
        with self.settings(), seeded(seed, self.device):  # network initialisation
            self._build(experiment, seed)

    def settings(self) -> Any:
        """torch's threads and TF32 for this trainer, restored when the block ends."""
        return torch_settings(self.threads, self.device)

    def _build(self, experiment: Experiment, seed: int) -> None:
        self.dataset = load_experiment_dataset(experiment)
        test = self.dataset.test
        if experiment.train.eval_size is not None:
            test = test[: experiment.train.eval_size]
        self.eval_data = test.to(self.device)  # (M, D)
        subset = torch.Generator().manual_seed(seed_for(seed, _TRAIN_SUBSET_STREAM))
        binary = self.dataset.likelihood == "bernoulli"
        size = experiment.train.nll_train_size
        self.train_eval_data = training_subset(self.dataset.train, size, subset, binary).to(
            self.device
        )  # (K, D): the fixed points of nll_train

        self.compiled = experiment.compiled
        self.lagrangian = self.compiled.lagrangian
        self.base_form = self.compiled.coefficients()
        self.dual = (
            DualAscent(self.lagrangian, experiment.objective.dual)
            if experiment.objective.mode == "lagrangian"
            else None
        )
        form = dict(self.base_form)
        if experiment.model.encoder == "implicit":  # AVB: the rate by an adversary T(x, z)
            form = implicit_encoder_form(form)
        if self.dual is not None:
            form = {t: 0.0 for t in self.dual.terms()} | self.dual.form(self.base_form)

        likelihood = experiment.model.likelihood or self.dataset.likelihood
        x_dim, z_dim = self.dataset.dim, experiment.model.z_dim
        self.model = InfoAEModel(x_dim, experiment.model, likelihood).to(self.device)
        self.loss = FamilyLoss(form, self.model, experiment.objective, x_dim, z_dim).to(self.device)
        groups = self.loss.parameter_groups()
        self.params: dict[str, list[torch.nn.Parameter]] = {"model": [*groups["p"], *groups["q"]]}
        self.params.update({g: ps for g, ps in groups.items() if g.startswith("disc:")})
        t = experiment.train
        self.optimizers = {  # fused: one kernel for all tensors (CPU and CUDA), same maths
            g: torch.optim.Adam(ps, lr=t.lr if g == "model" else t.discriminator_lr, fused=True)
            for g, ps in self.params.items()
        }

        data_seed = seed_for(seed, _DATA_STREAM)
        index_generator = torch.Generator().manual_seed(data_seed)  # permutations: on the CPU
        binary_generator = None
        if self.device.type != "cpu":
            binary_generator = torch.Generator(self.device).manual_seed(data_seed + 1)
        self.batches = BatchStream(
            self.dataset, t.batch_size, index_generator, self.device, binary_generator
        )
        self.sampling = torch.Generator(self.device).manual_seed(seed_for(seed, _SAMPLING_STREAM))
        self.step = 0
        self.status = "running"
        self.diverged: dict[str, Any] | None = None
        self._timing = [0.0, 0]  # seconds spent in train_steps, samples seen there

    # ----------------------------------------------------------------- training

    def train_steps(self, n: int) -> None:
        """Take up to ``n`` steps; stop early (status "diverged") on a non-finite loss or term."""
        with self.settings():
            self._train_steps(n)

    def _train_steps(self, n: int) -> None:
        start = time.perf_counter()
        taken = 0
        for _ in range(n):
            if self.status == "diverged":
                break
            self._discriminator_steps(self.experiment.train.disc_steps - 1)
            x = next(self.batches)
            with self._autocast():
                out = self.loss(x, self.sampling)
            bad = _first_non_finite(out.losses, out.breakdown)
            if bad is not None:
                self.status = "diverged"
                self.diverged = {"step": self.step + 1, "term": bad}
                break
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            if len(out.losses) == 1:  # the model alone: a plain backward is the same, faster
                out.losses["model"].backward()
            else:
                for group, loss in out.losses.items():  # separate graphs: detached samples
                    loss.backward(inputs=self.params[group])
            for optimizer in self.optimizers.values():
                optimizer.step()
            self.step += 1
            taken += 1
            if self.dual is not None:
                self.dual.update(out.breakdown)
                self.loss.set_tractable_form(self.dual.form(self.base_form))
        self._timing[0] += time.perf_counter() - start
        self._timing[1] += taken * self.experiment.train.batch_size

    def _discriminator_steps(self, n: int) -> None:
        """``n`` updates of every discriminator alone, each on a fresh batch, before the joint
        step (which updates them once more): `train.disc_steps` = n + 1 per model step."""
        if len(self.optimizers) == 1:
            return
        for _ in range(n):
            with self._autocast():
                out = self.loss(next(self.batches), self.sampling)
            for group, optimizer in self.optimizers.items():
                if group != "model":
                    optimizer.zero_grad(set_to_none=True)
                    out.losses[group].backward(inputs=self.params[group])
                    optimizer.step()

    def _autocast(self) -> torch.autocast:
        """bf16 autocast of the forward pass when `train.precision` asks for it (matmuls in
        bf16 on tensor cores; losses, backward and evaluation stay in fp32)."""
        enabled = self.experiment.train.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # ----------------------------------------------------------------- evaluation

    def evaluate(self) -> dict[str, float]:
        """Every metric of DESIGN.md on the evaluation set, plus `mi_cap`, `step`, `status`."""
        with self.settings(), torch.no_grad():
            return self._evaluate()

    def _evaluate(self) -> dict[str, float]:
        seconds, samples = self._timing
        metrics: dict[str, Any] = {"step": self.step, "status": self.status}
        if self.status == "diverged":
            metrics |= {m: math.nan for m in METRICS} | {"mi_cap": math.nan}
        else:
            generator = torch.Generator(self.device).manual_seed(
                seed_for(self.experiment.seed, _EVAL_STREAM, self.step)
            )
            self.model.eval()
            try:
                metrics |= evaluate_model(
                    self.model,
                    self.eval_data,
                    self.train_eval_data,
                    iw_samples=self.experiment.train.iw_samples,
                    generator=generator,
                    data_entropy=MOG_ENTROPY if self.dataset.name == "mog" else None,
                )
            finally:
                self.model.train()
        metrics["train_samples_per_s"] = samples / seconds if seconds > 0 else math.nan
        if self.dual is not None:
            metrics |= {f"lambda/{t}": v for t, v in self.dual.lambdas.items()}
        if self.diverged is not None:
            metrics["diverged_step"] = self.diverged["step"]
            metrics["diverged_term"] = self.diverged["term"]
        return metrics

    def run(self) -> Iterator[dict[str, Any]]:
        """Train to `train.steps`, evaluating every `eval_every` steps; the last dict has done."""
        t = self.experiment.train
        if self.status == "ok" and self.step < t.steps:  # resumed with more steps to take
            self.status = "running"
        while self.status == "running" and self.step < t.steps:
            self._timing = [0.0, 0]
            self.train_steps(min(t.eval_every - self.step % t.eval_every, t.steps - self.step))
            if self.status == "running" and self.step < t.steps:
                yield self.evaluate()
        if self.status == "running":
            self.status = "ok"
        yield self.evaluate() | {"done": True}

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, directory: Path) -> Path:
        """Everything a resume needs to continue exactly as an uninterrupted run would."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "status": self.status,
            "diverged": self.diverged,
            "lambdas": dict(self.dual.lambdas) if self.dual is not None else {},
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "batches": self.batches.state_dict(),
            "sampling": self.sampling.get_state(),
            "experiment": self.experiment.to_dict(),
        }
        path = directory / CHECKPOINT_FILE
        partial = path.with_suffix(".tmp")
        torch.save(state, partial)
        partial.replace(path)  # never leave a half-written checkpoint behind
        return path

    def load_checkpoint(self, directory: Path) -> None:
        path = Path(directory) / CHECKPOINT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        # on the CPU: generator states must stay there; load_state_dict moves the rest
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.step, self.status, self.diverged = state["step"], state["status"], state["diverged"]
        if self.dual is not None:
            self.dual.lambdas.update(state["lambdas"])
            self.loss.set_tractable_form(self.dual.form(self.base_form))
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        for group, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][group])
        self.batches.load_state_dict(state["batches"])
        self.sampling.set_state(state["sampling"])


def _first_non_finite(
    losses: Mapping[str, torch.Tensor], breakdown: Mapping[str, torch.Tensor]
) -> str | None:
    """Name of the first non-finite breakdown term ("loss" if only a loss is), else None.

    Every term enters the model loss with its coefficient (0 · NaN is NaN too), so the sum
    of the losses is finite iff all terms are: one scalar and one device sync per step.
    """
    total = sum(loss.detach() for loss in losses.values())
    if math.isfinite(float(total)):
        return None
    for name, value in breakdown.items():
        if name != "loss" and not bool(torch.isfinite(value).all()):
            return name
    return "loss"
