"""One member of a population: its networks, discriminators, data and random streams.

Each member is built as a run of its own would be: under its own seed, in a fixed order (the
data set, its evaluation subsets, the networks, then the discriminators), with its own data
stream and sampling generator derived from the seed (`seed_for`). A member's draws depend on
nothing but its own streams, so it trains the same numbers alone or beside others (up to the
float rounding of a batched kernel).

`SHARED` is the registry of what the members of one population must share (one network shape,
one data set, one set of loss terms and estimator settings); members differing in any of them
train in separate populations (`group_key`), and the reason is said in one line (`apart`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiment.config import ConfigError, Experiment
from experiment.status import RUNNING
from objectives.dual import DualAscent
from objectives.implicit import implicit_encoder_form
from objectives.loss import build_discriminators, loss_terms
from objectives.networks import Discriminator, InfoAEModel
from training.data import BatchStream, DataError, Dataset, load_dataset
from training.evaluation import training_subset
from training.runtime import seeded

_DATA_STREAM, _SAMPLING_STREAM, _EVAL_STREAM, _TRAIN_SUBSET_STREAM = 10, 11, 12, 13  # seed uses


def seed_for(seed: int, stream: int, *extra: int) -> int:
    """An independent 63-bit seed for one use of the experiment seed (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, stream, *extra]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def eval_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The evaluation's stream at `step`: the same draws whenever that step is evaluated."""
    return torch.Generator(device).manual_seed(seed_for(seed, _EVAL_STREAM, step))


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


def _with_shared_train(
    loaded: Dataset, experiment: Experiment, device: torch.device, datasets: dict[Any, Dataset]
) -> Dataset:
    """`loaded` with its training images on `device`, one tensor for every member of the same
    data set: an image set's training split does not depend on the seed (only its test
    binarisation does), so K members hold one copy, not K (60,000 digits are 188 MB), and a
    population gathers their batches with one index op (`training.data.StackedBatches`). The
    mixture is drawn from each member's seed: its own."""
    shared_key = ("train", experiment.dataset)
    if loaded.name == "mog":
        return dataclasses.replace(loaded, train=loaded.train.to(device))
    if shared_key not in datasets:
        datasets[shared_key] = dataclasses.replace(loaded, train=loaded.train.to(device))
    return dataclasses.replace(loaded, train=datasets[shared_key].train)


def loss_form(experiment: Experiment) -> dict[str, float]:
    """The tractable form a member's loss is built with: the compiled one, rewritten for an
    implicit encoder (AVB), with every term dual ascent reads present (at 0 if absent)."""
    form = dict(experiment.compiled.coefficients())
    if experiment.model.encoder == "implicit":  # the rate by an adversary T(x, z)
        form = implicit_encoder_form(form)
    if experiment.objective.mode == "lagrangian":
        form = {t: 0.0 for t in sorted(DualAscent.terms_of(experiment.objective.dual))} | form
    return form


def _dual_setting(e: Experiment) -> Any:
    o = e.objective
    return (o.mode, tuple(o.dual.slack) if o.mode == "lagrangian" else ())


# What the members of one population share: the dotted key (or a description) -> the value
# that must agree. A new shared setting is one line.
SHARED: dict[str, Callable[[Experiment], Any]] = {
    "dataset": lambda e: e.dataset,
    "model": lambda e: e.model,
    # the schedule is part of `train` (stated apart for the message): members' stacked
    # parameters share one Adam parameter group, so one rate per step
    "train.lr_schedule": lambda e: e.train.lr_schedule,
    "train": lambda e: e.train,
    "objective.kernel": lambda e: e.objective.kernel,
    "objective.kernel_bandwidth": lambda e: e.objective.kernel_bandwidth,
    "objective.kernel_estimator": lambda e: e.objective.kernel_estimator,
    "objective.js_gradient": lambda e: e.objective.js_gradient,
    "objective.mi_upper_bound_on": lambda e: e.objective.mi_upper_bound_on,
    "objective.x_gradient": lambda e: e.objective.x_gradient,
    "objective.mode": _dual_setting,  # and, under dual ascent, the constrained quantities
    "the loss terms": lambda e: tuple(loss_terms([loss_form(e)])),
}


def group_key(experiment: Experiment) -> str:
    """Equal for experiments that can train in one population."""
    return repr(tuple(value(experiment) for value in SHARED.values()))


def apart(a: Experiment, b: Experiment) -> str | None:
    """Why a and b cannot train in one population (what they differ in), else None."""
    for name, value in SHARED.items():
        if value(a) != value(b):
            return f"members differ in {name}"
    return None


def searched_apart(keys: Iterable[str]) -> str | None:
    """The first searched dotted key that members must share (they would train apart)."""
    for key in keys:
        if any(key == name or key.startswith(name + ".") for name in SHARED):
            return key
    return None


@dataclass(eq=False)
class Member:
    """One member: its experiment, plain networks (initialised under its seed; evaluation
    reads them), data, streams and progress. The stacked model holds its trained weights."""

    experiment: Experiment
    dataset: Dataset
    model: InfoAEModel
    discriminators: dict[str, Discriminator]
    eval_data: torch.Tensor  # (M, D) test points
    train_eval_data: torch.Tensor  # (N, D) fixed training points of nll_train
    batches: BatchStream
    sampling: torch.Generator
    step: int = 0
    status: str = RUNNING  # RUNNING, OK or DIVERGED (experiment.status)
    diverged: dict[str, Any] | None = None
    timing: list[float] = field(default_factory=lambda: [0.0, 0])  # seconds, samples

    def state_dict(self) -> dict[str, Any]:
        """The member's progress and streams (its weights live in the stacked model)."""
        return {
            "step": self.step,
            "status": self.status,
            "diverged": self.diverged,
            "batches": self.batches.state_dict(),
            "sampling": self.sampling.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step, self.status, self.diverged = state["step"], state["status"], state["diverged"]
        self.batches.load_state_dict(state["batches"])
        self.sampling.set_state(state["sampling"])


def build_member(
    experiment: Experiment, device: torch.device, datasets: dict[Any, Dataset]
) -> Member:
    """Member `experiment`, on `device`; `datasets` caches data sets shared by members."""
    seed, t = experiment.seed, experiment.train
    with seeded(seed, device):  # network initialisation draws from torch's global stream
        key = (seed, experiment.dataset)
        if key not in datasets:
            datasets[key] = _with_shared_train(
                load_experiment_dataset(experiment), experiment, device, datasets
            )
        dataset = datasets[key]
        test = dataset.test if t.eval_size is None else dataset.test[: t.eval_size]
        subset = torch.Generator().manual_seed(seed_for(seed, _TRAIN_SUBSET_STREAM))
        binary = dataset.likelihood == "bernoulli"
        train_eval = training_subset(dataset.train.cpu(), t.nll_train_size, subset, binary)
        likelihood = experiment.model.likelihood or dataset.likelihood
        model = InfoAEModel(dataset.dim, experiment.model, likelihood).to(device)
        discriminators = build_discriminators(loss_terms([loss_form(experiment)]), model)
    data_seed = seed_for(seed, _DATA_STREAM)
    index_generator = torch.Generator().manual_seed(data_seed)  # permutations: on the CPU
    binary_generator = None
    if device.type != "cpu":
        binary_generator = torch.Generator(device).manual_seed(data_seed + 1)
    batches = BatchStream(dataset, t.batch_size, index_generator, device, binary_generator)
    sampling = torch.Generator(device).manual_seed(seed_for(seed, _SAMPLING_STREAM))
    return Member(
        experiment,
        dataset,
        model,
        {n: d.to(device) for n, d in discriminators.items()},
        test.to(device),
        train_eval.to(device),
        batches,
        sampling,
    )
