"""Everything a search decides before Ray starts: the `SearchPlan`.

`plan_search` validates the space, compiles a grid over it, checks that the data load on this
(the driver's) machine, resolves the trials a grid sampler runs and the members a population
trial trains (`search.population: auto`) and the placed start-up (`search.startup`), names
the MI bound the search optimises, and picks the experiment directory `<storage>/<name>/`:
`experiment.yaml` (the experiment as run, every choice resolved: written once by
`write_experiment`, read by `--resume`), `trials.csv`, the Optuna study (`optuna.journal`, or
the `search.study` URL) and Tune's own files. No Ray here.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from experiment.config import IMAGE_DATASETS, ConfigError, Experiment, load_experiment
from experiment.files import write_atomic
from experiment.samplers import SAMPLERS, startup_asked
from search import storage
from search.feasibility import check_compiles, enqueue_presets
from search.populations import population_size, with_population
from search.space_config import parse_space
from search.spaces import Space, describe
from search.startup import startup_points, without
from training.data import DataError, load_dataset

JOURNAL_FILE = "optuna.journal"  # Optuna's journal storage: safe on shared filesystems (NFS)
OWN_FILES = ("experiment.yaml", "trials.csv", JOURNAL_FILE)  # written by the driver
ADDRESS_TIMEOUT_S = 5.0  # how long `--address` may stay silent before the search gives up


@dataclass(frozen=True)
class SearchPlan:
    """Everything decided before Ray starts; `experiment` is the experiment as run (its
    metrics, population size and name resolved)."""

    experiment: Experiment
    space: Space
    storage: str  # results root: an absolute path, or a URI (s3://, gs://, file://)
    name: str  # the experiment directory's name under `storage`
    local_dir: Path  # where trials.csv, experiment.yaml and the journal are written
    mi_bound: str  # what the MI objective is and which bound, for people ("" without one)
    num_samples: int
    points: tuple[Mapping[str, float], ...]  # enqueued starting points
    population_note: str = ""  # how `search.population` was resolved, for people

    @property
    def experiment_path(self) -> str:
        return storage.join(self.storage, self.name)

    @property
    def is_remote(self) -> bool:
        return storage.is_remote(self.storage)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.experiment.search.metrics

    @property
    def modes(self) -> tuple[str, ...]:
        return self.experiment.search.modes

    @property
    def mi_metric(self) -> str:
        return next((m for m in self.metrics if m in ("mi", "rate")), "")

    @property
    def study(self) -> str:
        """The Optuna storage: `search.study` (a URL), else the journal file beside the results."""
        return self.experiment.search.study or str((self.local_dir / JOURNAL_FILE).resolve())

    @property
    def trials_csv(self) -> Path:
        return self.local_dir / "trials.csv"

    def sync(self, filename: str) -> None:
        """With a URI storage, copy one of the driver's files up beside Tune's files."""
        if self.is_remote and (self.local_dir / filename).is_file():
            storage.upload(self.local_dir / filename, storage.join(self.experiment_path, filename))


def mi_bound(experiment: Experiment) -> str:
    """What the MI objective is and which bound, for people ("" when the search has none)."""
    metrics = experiment.search.metrics or ()
    if "rate" in metrics:
        bound = "rate: E KL(q(z|x)||p(z)), an upper bound on I_q(x;z)"
        if experiment.dataset.name in IMAGE_DATASETS:
            bound += " (on image data the aggregate-posterior mi saturates at log N)"
        return bound
    if "mi" in metrics:
        return "mi: I_q(x;z) with the aggregate posterior over the eval set, capped at log N"
    return ""


def plan_search(
    experiment: Experiment,
    *,
    storage_root: str | None = None,
    resume: bool = False,
    address: str | None = None,
) -> SearchPlan:
    """Validate and resolve everything a search needs without Ray: space, compiler, data,
    storage, trial count, population size. `address`: the Ray cluster the search will join
    (None: a local Ray on this machine)."""
    space = parse_space(experiment)
    check_compiles(experiment, space)
    points = tuple(enqueue_presets(experiment, space))
    experiment = _absolute_data_dir(experiment)  # trials run in their own directories
    _check_data(experiment)
    root = storage_root or experiment.storage
    if not storage.is_remote(root):
        root = str(Path(root).expanduser().resolve())
    name = experiment.name if resume else _fresh_name(root, experiment.name)
    if name != experiment.name:
        experiment = replace(experiment, name=name)
    num_samples = experiment.search.num_samples
    if SAMPLERS[experiment.search.sampler].grid:
        num_samples = grid_size(space, num_samples)
    gpu = _trials_get_a_gpu(experiment, address)
    k, note = population_size(experiment, num_samples, gpu=gpu, keys=space.keys)
    experiment = with_population(experiment, k)
    if experiment.search.startup == "orthogonal":
        points += tuple(_placed_startup(experiment, space, num_samples, points))
    local = storage.local_dir(root, name)
    bound = mi_bound(experiment)
    return SearchPlan(experiment, space, root, name, local, bound, num_samples, points, note)


def _placed_startup(
    experiment: Experiment, space: Space, num_samples: int, presets: tuple[Mapping[str, float], ...]
) -> list[dict[str, float]]:
    """`search.startup: orthogonal`: the start-up's points (`search.startup`), after presets."""
    count = startup_asked(num_samples) - len(presets)
    return without(startup_points(space, count, experiment.sampler_seed), list(presets))


def stored_experiment(experiment: Experiment, storage_root: str | None) -> Experiment:
    """The experiment a search started with (`--resume` continues that one). With a URI
    storage its files are fetched first, so a search resumes from any machine."""
    root = storage_root or experiment.storage
    local = storage.local_dir(root, experiment.name)
    if storage.is_remote(root):
        for filename in OWN_FILES:
            storage.download(storage.join(root, experiment.name, filename), local / filename)
    path = local / "experiment.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume: no search to resume ({path} not found)")
    stored = load_experiment(path)
    given, kept = experiment.to_dict(), stored.to_dict()
    changed = [k for k in given if k not in ("storage", "search") and given[k] != kept[k]]
    changed += [  # population: auto is kept resolved, as the number it chose
        f"search.{k}"
        for k, v in given["search"].items()
        if v != kept["search"][k] and not (k == "population" and v == "auto")
    ]
    if changed:
        print(f"note: resuming with {path}; changes to {', '.join(changed)} are ignored")
    return stored


def write_experiment(plan: SearchPlan) -> None:
    """`experiment.yaml` in the experiment directory (and its stale local copies gone)."""
    plan.local_dir.mkdir(parents=True, exist_ok=True)
    if plan.is_remote:  # the local copy of an earlier search of that name
        for stale in OWN_FILES:
            (plan.local_dir / stale).unlink(missing_ok=True)
    text = yaml.safe_dump(plan.experiment.to_dict(), sort_keys=False, allow_unicode=True)
    write_atomic(plan.local_dir / "experiment.yaml", text)
    plan.sync("experiment.yaml")


def announce(plan: SearchPlan, resume: bool) -> Iterable[str]:
    """What the search is about to do, for people: a few lines."""
    e = plan.experiment
    pairs = zip(plan.metrics, plan.modes, strict=True)
    objectives = ", ".join(f"{metric} ({mode})" for metric, mode in pairs)
    yield (
        f"{'resuming' if resume else 'searching'} {e.name}: {plan.num_samples} trials, "
        f"{e.search.sampler} sampler, {e.search.max_concurrent} at a time; objectives {objectives}"
    )
    if plan.mi_bound:
        yield f"MI objective: {plan.mi_bound}"
    if plan.population_note:
        yield f"note: {plan.population_note}"
    for line in describe(plan.space):
        yield f"  {line}"
    if SAMPLERS[e.search.sampler].grid and plan.num_samples != e.search.num_samples:
        yield (
            f"note: the grid sampler runs a full grid of {plan.num_samples} trials, "
            f"not search.num_samples={e.search.num_samples}"
        )


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes of Ray's retries, when nothing answers at `address`."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address in ("auto", "local") or not host or not port.isdigit():
        return  # Ray resolves these itself
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as error:
        raise ConfigError(
            f"--address {address}: nothing answers at {host}:{port} ({error}); start the head "
            "with `ray start --head` there, or check the address"
        ) from None


def grid_size(space: Space, num_samples: int) -> int:
    """Trials of the full grid nearest `num_samples`: the same count of values per parameter."""
    return grid_values_per_param(space, num_samples) ** len(space.params)


def grid_values_per_param(space: Space, num_samples: int) -> int:
    return max(2, round(num_samples ** (1 / len(space.params))))


def _trials_get_a_gpu(experiment: Experiment, address: str | None) -> bool:
    """Whether trials will train on a GPU: asked for (`resources.gpu`) and there. A local Ray
    has this machine's; a cluster's GPUs cannot be seen before joining it, so they are taken
    as asked (`search.tune` says so when the cluster has none, and trials run on CPU)."""
    if experiment.resources.gpu <= 0:
        return False
    if address:
        return True
    import torch  # the trainer's import: what Ray will find on this machine

    return torch.cuda.is_available()


def _absolute_data_dir(experiment: Experiment) -> Experiment:
    """A relative `dataset.data_dir` as the driver reads it: Ray runs each trial in a folder
    of its own, where a relative path would name nothing."""
    data_dir = experiment.dataset.data_dir
    if data_dir is None or Path(data_dir).expanduser().is_absolute():
        return experiment
    absolute = str(Path(data_dir).expanduser().resolve())
    return replace(experiment, dataset=replace(experiment.dataset, data_dir=absolute))


def _check_data(experiment: Experiment) -> None:
    """Fail before Ray when the data set cannot be loaded on this (the driver's) machine."""
    d = experiment.dataset
    if d.name == "mog":
        return
    data_dir = str(Path(d.data_dir).expanduser()) if d.data_dir else None
    try:
        load_dataset(
            d.name, data_dir, seed=experiment.seed, train_size=1, test_size=1, download=d.download
        )
    except (DataError, ValueError, OSError) as error:
        raise ConfigError(f"dataset.data_dir: {error}") from None


def _fresh_name(root: str, name: str) -> str:
    """`name`, or `name-2`, `name-3`... when a search already lives there (see --resume)."""
    candidate, index = name, 1
    while _has_search(storage.join(root, candidate)):
        index += 1
        candidate = f"{name}-{index}"
    return candidate


def _has_search(path: str) -> bool:
    """Our files or Tune's (tuner.pkl) at the path: a search lives there."""
    return any(storage.exists(storage.join(path, f)) for f in (*OWN_FILES, "tuner.pkl"))
