"""Framework-free training of one member of the family; no Ray import here (DESIGN.md).

A `Trainer` owns everything one run needs: the data stream, the model (encoder q(z|x), decoder
p(x|z)), the compiled objective as a `FamilyLoss` (one loss per parameter group: "model" for
p and q, "disc:<term>" per discriminator), one Adam per group, and the random generators.
A step is one shared forward pass, one backward per group onto that group's own parameters,
then every optimiser steps. The loop never special-cases a model: the Lagrangian is data.

Dual ascent (paper Section 4.1: λ should be maximised, not fixed) moves the multipliers of the
chosen constraints D_t <= ε_t by projected gradient ascent; the tractable form is linear in λ,
so the new loss is the old one plus (λ - λ0) times the term's own tractable form.

`train()` is the command line's whole run: JSON lines on stdout, `metrics.jsonl`,
`config.yaml` and `checkpoint/` in the output directory; `--resume` continues exactly.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from objectives.compile import Compiled, compile_lagrangian, term_form
from objectives.estimators import FamilyLoss
from objectives.networks import InfoAEModel
from objectives.presets import resolve
from objectives.terms import FamilyError, Lagrangian, canonical_term
from search.config import METRICS, ConfigError, Experiment, load_experiment
from search.data import DataError, Dataset, load_dataset
from search.evaluate import decoder_table
from search.evaluate import evaluate as evaluate_metrics

CHECKPOINT_FILE = "trainer.pt"
_DATA_STREAM, _SAMPLING_STREAM, _EVAL_STREAM = 10, 11, 12  # independent uses of the seed


def seed_for(seed: int, stream: int, *extra: int) -> int:
    """An independent 63-bit seed for one use of the experiment seed (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, stream, *extra]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


# --------------------------------------------------------------------------- data stream


class BatchStream:
    """`Dataset.train_batches` with a state that checkpoints (a generator object cannot).

    The same draws in the same order: each epoch a fresh permutation from ``generator``,
    batches running on across epoch boundaries, Bernoulli data binarised per batch
    (Appendix C.2). On CUDA the rows live on the device and the binarisation uses a device
    generator; the permutation is always drawn on the CPU.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device):
        self.train = dataset.train.to(device)  # (N, D)
        self.binarise = dataset.likelihood == "bernoulli"
        self.batch_size = batch_size
        self.index_generator = torch.Generator().manual_seed(seed)
        if device.type == "cpu":
            self.binary_generator = self.index_generator
        else:
            self.binary_generator = torch.Generator(device).manual_seed(seed + 1)
        self.pending = torch.empty(0, dtype=torch.long)

    def __next__(self) -> torch.Tensor:
        while len(self.pending) < self.batch_size:
            order = torch.randperm(len(self.train), generator=self.index_generator)
            self.pending = torch.cat([self.pending, order])
        index, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
        batch = self.train[index.to(self.train.device)]  # (B, D)
        if self.binarise:
            batch = torch.bernoulli(batch, generator=self.binary_generator)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending.clone(),
            "index_generator": self.index_generator.get_state(),
            "binary_generator": self.binary_generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pending = state["pending"].clone()
        self.index_generator.set_state(state["index_generator"])
        self.binary_generator.set_state(state["binary_generator"])


# --------------------------------------------------------------------------- dual ascent


class DualAscent:
    """λ_t <- clip(λ_t + lr (D̂_t - ε_t), λ_min, λ_max) for each constraint D_t <= ε_t.

    λ starts at the Lagrangian's own multiplier of the term (or at λ_min when the term is not
    in it). Only terms whose own tractable form is tractable can move; D̂_t is the term's
    estimate in the step's breakdown, or its tractable form evaluated there (for a term the
    compiler rewrites into likelihood terms, e.g. a joint KL, that is D_t up to a constant).
    """

    def __init__(self, lagrangian: Lagrangian, experiment: Experiment):
        dual = experiment.objective.dual
        self.lr, self.low, self.high = dual.lr, dual.lambda_min, dual.lambda_max
        self.slack: dict[str, float] = {}
        self.forms: dict[str, dict[str, float]] = {}
        self.initial: dict[str, float] = {}
        for name, epsilon in dual.slack.items():
            try:
                term = canonical_term(name)
                form, residual = term_form(term)
            except FamilyError as error:
                raise ConfigError(f"objective.dual.slack.{name}: {error}") from None
            if term in ("I_p", "I_q") or residual:
                raise ConfigError(
                    f"objective.dual.slack.{name}: only a divergence whose own tractable form "
                    "exists (a marginal or joint divergence, for example) can be adapted by dual "
                    f"ascent; residual: {', '.join(residual) or name}"
                )
            self.slack[term] = float(epsilon)
            self.forms[term] = {t: float(c) for t, c in form.items()}
            self.initial[term] = float(lagrangian.lambdas.get(term, 0))
        self.lambdas = {t: min(max(v, self.low), self.high) for t, v in self.initial.items()}

    def terms(self) -> set[str]:
        """Every tractable term a slack term's form uses (the loss must estimate them all)."""
        return {s for form in self.forms.values() for s in form}

    def form(self, base: Mapping[str, float]) -> dict[str, float]:
        """The tractable form at the current λ: base + Σ_t (λ_t - λ0_t) form_t."""
        out = dict(base)
        for term, form in self.forms.items():
            shift = self.lambdas[term] - self.initial[term]
            for s, c in form.items():
                out[s] = out.get(s, 0.0) + shift * c
        return out

    def estimate(self, term: str, breakdown: Mapping[str, torch.Tensor]) -> float:
        if term in breakdown:
            return float(breakdown[term])
        return sum(c * float(breakdown[s]) for s, c in self.forms[term].items())

    def update(self, breakdown: Mapping[str, torch.Tensor]) -> None:
        for term, epsilon in self.slack.items():
            value = self.lambdas[term] + self.lr * (self.estimate(term, breakdown) - epsilon)
            self.lambdas[term] = min(max(value, self.low), self.high)


# --------------------------------------------------------------------------- the trainer


def compile_experiment(experiment: Experiment) -> tuple[Lagrangian, Compiled]:
    """The experiment's Lagrangian and its tractable form; out-of-family or intractable input
    is a ConfigError that names the problem (the residual terms, for an intractable one)."""
    try:
        lagrangian = resolve(experiment.objective)
        compiled = compile_lagrangian(lagrangian)
    except FamilyError as error:
        raise ConfigError(f"objective: {error}") from None
    if not compiled.tractable:
        residual = ", ".join(compiled.residual)
        raise ConfigError(
            f"objective: {lagrangian.describe()} is intractable (no tractable form under the "
            f"elementary transformations); residual terms: {residual}"
        )
    return lagrangian, compiled


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
        self.threads = threads or experiment.train.threads or 1
        torch.set_num_threads(self.threads)
        self.device = resolve_device(experiment.train.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        seed = experiment.seed
        torch.manual_seed(seed)  # network initialisation

        self.dataset = load_experiment_dataset(experiment)
        test = self.dataset.test
        if experiment.train.eval_size is not None:
            test = test[: experiment.train.eval_size]
        self.eval_data = test.to(self.device)  # (M, D)

        self.lagrangian, self.compiled = compile_experiment(experiment)
        self.base_form = self.compiled.coefficients()
        self.dual = (
            DualAscent(self.lagrangian, experiment)
            if experiment.objective.mode == "lagrangian"
            else None
        )
        form = dict(self.base_form)
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

        self.batches = BatchStream(
            self.dataset, t.batch_size, seed_for(seed, _DATA_STREAM), self.device
        )
        self.sampling = torch.Generator(self.device).manual_seed(seed_for(seed, _SAMPLING_STREAM))
        self.step = 0
        self.status = "running"
        self.diverged: dict[str, Any] | None = None
        self._timing = [0.0, 0]  # seconds spent in train_steps, samples seen there

    # ----------------------------------------------------------------- training

    def train_steps(self, n: int) -> None:
        """Take up to ``n`` steps; stop early (status "diverged") on a non-finite loss or term."""
        start = time.perf_counter()
        taken = 0
        for _ in range(n):
            if self.status == "diverged":
                break
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

    def _autocast(self) -> torch.autocast:
        """bf16 autocast of the forward pass when `train.precision` asks for it (matmuls in
        bf16 on tensor cores; losses, backward and evaluation stay in fp32)."""
        enabled = self.experiment.train.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # ----------------------------------------------------------------- evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every metric of DESIGN.md on the evaluation set, plus `mi_cap`, `step`, `status`."""
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
                metrics |= evaluate_metrics(
                    self.model.encoder.encode,
                    self.model.decoder.log_prob,
                    self.eval_data,
                    iw_samples=self.experiment.train.iw_samples,
                    generator=generator,
                    table=decoder_table(self.model.decoder),
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
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
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
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


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


# --------------------------------------------------------------------------- whole runs


def train(experiment: Experiment, out_dir: Path | None = None, resume: bool = False) -> dict:
    """Train one config to the end; print one JSON line per evaluation; return the last.

    With ``out_dir``: ``config.yaml`` (the experiment), ``metrics.jsonl`` (one line per
    evaluation) and ``checkpoint/`` (after each evaluation); ``resume`` continues from it.
    """
    trainer = Trainer(experiment)
    checkpoint = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = out_dir / "checkpoint"
        (out_dir / "config.yaml").write_text(yaml.safe_dump(experiment.to_dict(), sort_keys=False))
        if resume and (checkpoint / CHECKPOINT_FILE).is_file():
            trainer.load_checkpoint(checkpoint)
        elif resume:
            print(f"note: no checkpoint in {checkpoint}; starting from step 0", file=sys.stderr)
    log = open(out_dir / "metrics.jsonl", "a" if resume else "w") if out_dir else None  # noqa: SIM115
    metrics: dict[str, Any] = {}
    try:
        for metrics in trainer.run():
            line = json.dumps(_jsonable(metrics))
            print(line, flush=True)
            if log is not None:
                log.write(line + "\n")
                log.flush()
            if checkpoint is not None:
                trainer.save_checkpoint(checkpoint)
    finally:
        if log is not None:
            log.close()
    return metrics


def _jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Strict JSON: a NaN or infinite metric (e.g. of a diverged run) is written as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }


def main_train(args: Any) -> int:
    """`run_search.py train`: exit 0 when trained, 1 when it diverged, 2 on a bad input."""
    try:
        experiment = load_experiment(args.experiment, args.overrides)
        out = args.out
        if out is None:
            if "://" in experiment.storage:
                raise ConfigError(
                    f"storage: {experiment.storage!r} is remote; train needs --out DIR"
                )
            out = Path(experiment.storage) / experiment.name / "train"
        final = train(experiment, out, resume=args.resume)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if final.get("status") == "diverged":
        print(
            f"error: training diverged at step {final['diverged_step']} "
            f"(non-finite {final['diverged_term']})",
            file=sys.stderr,
        )
        return 1
    return 0
