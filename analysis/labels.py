"""What axes, hovers and captions say: every MI axis names its estimator and its bound."""

from __future__ import annotations

import math

import pandas as pd

from analysis.results import LAMBDA_PREFIX, MI_BOUNDS, Results, searched_keys

COLORS = ("#d1495b", "#00798c", "#edae49", "#30638e", "#66a182", "#8d96a3", "#6a4c93")
METRIC_NAMES = {
    "nll": "nll: test negative log-likelihood",
    "nll_train": "nll_train: negative log-likelihood on a training subset",
    "distortion": "distortion = -E_q log p(x|z)",
    "elbo": "elbo",
}


def axis_label(metric: str, trials: pd.DataFrame | None = None) -> str:
    """E.g. `mi: lower bound on I_q(x;z), ≤ log N = 4.605 (nats)`; captions name estimators."""
    if metric in MI_BOUNDS:
        side = MI_BOUNDS[metric][0]
        cap = ""
        if metric == "mi" and trials is not None and "mi_cap" in trials:
            value = pd.to_numeric(trials["mi_cap"], errors="coerce").max()
            cap = f", ≤ log N = {value:.3f}" if math.isfinite(value) else ""
        return f"{metric}: {side} bound on I_q(x;z){cap} (nats)"
    if metric.startswith(LAMBDA_PREFIX):
        return f"λ of {metric[len(LAMBDA_PREFIX) :]}"
    if metric in ("active_units", "floor_units", "train_samples_per_s"):
        return metric
    return f"{METRIC_NAMES.get(metric, metric)} (nats)"


def multiplier_columns(trials: pd.DataFrame) -> list[str]:
    """α1, α2, every λ, then the other searched keys (e.g. train.lr): what a trial *is*."""
    lambdas = [c for c in trials.columns if c.startswith(LAMBDA_PREFIX)]
    others = [k for k in searched_keys(trials) if not k.startswith("objective.")]
    return [c for c in ("alpha1", "alpha2") if c in trials] + lambdas + others


def hover_text(trials: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Per row: the trial, its family, its multipliers and its objectives."""
    columns = multiplier_columns(trials)
    texts = []
    for _, row in trials.iterrows():
        lines = [f"trial {row['trial_id']} ({row.get('experiment', '')})"]
        lines.append(f"family {row.get('family', '?')}")
        lines += [f"{_short(c)} = {row[c]:.4g}" for c in columns if _finite(row.get(c))]
        lines += [f"{m} = {row[m]:.4g}" for m in metrics if _finite(row.get(m))]
        texts.append("<br>".join(lines))
    return texts


def mi_caption(results: Results) -> str:
    """Which estimate of I_q(x;z) the plots use, which bound it is, and the sandwich drawn."""
    metric = results.mi_metric
    if not metric:
        return "No MI estimate was recorded."
    side, estimator = MI_BOUNDS[metric]
    lower, upper = sandwich_columns(results.trials)
    text = (
        f"MI objective: {metric}, a {side} bound on I_q(x;z), estimated by {estimator}"
        f"{' (at most log N of the eval set)' if metric == 'mi' else ''}."
    )
    if lower and upper:
        text += (
            f" Vertical bars: I_q(x;z) lies between the best lower bound "
            f"({', '.join(lower)}) and the tightest upper bound ({', '.join(upper)})."
        )
    return text


def sandwich_columns(trials: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The MI lower-bound and upper-bound columns the trials hold."""
    present = [m for m in MI_BOUNDS if m in trials and trials[m].notna().any()]
    lower = [m for m in present if MI_BOUNDS[m][0] == "lower"]
    upper = [m for m in present if MI_BOUNDS[m][0] == "upper"]
    return lower, upper


def _short(column: str) -> str:
    if column.startswith(LAMBDA_PREFIX):
        return "λ " + column[len(LAMBDA_PREFIX) :]
    return {"alpha1": "α1", "alpha2": "α2"}.get(column, column)


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
