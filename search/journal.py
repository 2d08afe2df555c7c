"""Where a search's Optuna study lives, whose trials are whose, and how it is labelled; no Ray.

The study is Optuna's journal file in the experiment folder (or a `search.study` URL). Each
Optuna trial names its search in the user attribute `owner`: the experiment folder's name
(`<storage>/<name>`), not its path, so a folder moved or copied elsewhere (or fetched from its
URI on another machine) still owns its trials; a search from before issue 18 wrote the
absolute path, of which the last part is read as the name. Searches that share one
`search.study` URL therefore need different names (`<name>-2`... within one storage root).

The study carries its metric names (`Study.set_metric_names`: optuna-dashboard and
`optuna.visualization` label the axes "nll", "mi" rather than "Objective 0") and, as study
user attributes, what a dashboard reader needs: the family's objective, each metric's
direction, and what the MI objective bounds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from experiment.config import Experiment
from search.plan import mi_bound

STUDY_NAME = "search"


def open_storage(study: str) -> BaseStorage:
    """An Optuna storage from a URL (`postgresql://`, `sqlite:///`, ...) or a journal path."""
    if "://" in study:
        return RDBStorage(study)
    Path(study).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the journal file backend is stable but still flagged
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return JournalStorage(JournalFileBackend(study))


def owns(owner: str, recorded: Any) -> bool:
    """Whether a trial whose `owner` attribute is `recorded` belongs to the search `owner`."""
    if not isinstance(recorded, str):
        return False
    return recorded == owner or ("/" in recorded and PurePath(recorded).name == owner)


def study_labels(experiment: Experiment, names: Sequence[str], modes: Sequence[str]) -> dict:
    """The study's user attributes for people reading it in a dashboard."""
    objective = experiment.objective
    family = objective.preset or (
        f"lagrangian alpha1={objective.alpha1:g} alpha2={objective.alpha2:g}"
    )
    return {
        "family": f"InfoAE {family}",
        "dataset": experiment.dataset.name,
        "directions": {
            n: ("minimize" if m == "min" else "maximize") for n, m in zip(names, modes, strict=True)
        },
        "mi_bound": mi_bound(experiment),
    }


def _word(mode: str) -> str:
    return "minimize" if mode == "min" else "maximize"


def label(study: optuna.Study, experiment: Experiment, names: Sequence[str], modes: Sequence[str]):
    """Name the study's metrics and write its labels, once (a resumed study has them)."""
    if list(study.metric_names or ()) != list(names):
        with warnings.catch_warnings():  # set_metric_names is flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(names))
    for key, value in study_labels(experiment, names, modes).items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
