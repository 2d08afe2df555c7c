"""One evaluation of a model: every metric (docs/TRAINING.md#metrics), nll_train, the floors.

`training.metrics` computes the metrics from plain callables; this module feeds it an
`InfoAEModel` and adds what only the model knows:

- ``nll_train``: the NLL on a fixed subset of the training set (`training_subset`, drawn once
  from the seed, binarised once for Bernoulli data), beside the test ``nll``: the left panel
  of the paper's Figure 2, and the generalisation gap.
- ``floor_units``: the units whose log-variance sits at its floor (`model.encoder_logvar_min`
  for each latent unit of q(z|x), `model.decoder_logvar_min` for each pixel of a Gaussian
  p(x|z)). A floor caps what the objective can reach: an encoder floor caps I_q, a decoder
  floor caps -distortion and with it the Barber-Agakov information H(x) - distortion. A run
  with floor units > 0 whose MI stopped growing shows the floor, not the objective
  (`floor_note` says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from objectives.mmd import mmd_unbiased
from objectives.networks import GaussianDecoder, InfoAEModel
from training.information import barber_agakov
from training.metrics import (
    MMD_MAX_POINTS,
    decoder_table,
    evaluate,
    log_marginal_quadrature,
    negative_log_likelihood,
)

# A unit is at its floor when, at the median evaluation point, log σ² is within this many nats
# of the floor: there the soft clamp passes at most 63 % of the gradient (slope sigmoid(0.54)).
FLOOR_TOLERANCE = 1.0


def units_at_floor(logvar: Tensor, floor: float, tolerance: float = FLOOR_TOLERANCE) -> int:
    """Columns of ``logvar`` (N, K) whose median over the N points is within ``tolerance``
    nats of ``floor``."""
    if logvar.numel() == 0:
        return 0
    median = logvar.double().median(dim=0).values  # (K,)
    return int((median <= floor + tolerance).sum())


def floor_report(model: InfoAEModel, x: Tensor) -> dict[str, float]:
    """``floor_units`` and its two parts: encoder units (q(z|x) over ``x``) and decoder units
    (a Gaussian p(x|z) at the posterior means; a Bernoulli decoder has no variance)."""
    config = model.config
    mu, logvar = model.encoder.encode(x)  # (N, Z)
    encoder = units_at_floor(logvar, config.encoder_logvar_min)
    decoder = 0
    if isinstance(model.decoder, GaussianDecoder):
        decoder = units_at_floor(model.decoder(mu).logvar, config.decoder_logvar_min)
    return {
        "floor_units": float(encoder + decoder),
        "floor_units_encoder": float(encoder),
        "floor_units_decoder": float(decoder),
    }


def floor_note(metrics: Mapping[str, Any]) -> str | None:
    """One human line when a floor binds (names the key to lower), else None."""
    if not metrics.get("floor_units", 0) > 0:  # also False for NaN
        return None
    parts = []
    if metrics.get("floor_units_encoder", 0) > 0:
        parts.append(
            f"{metrics['floor_units_encoder']:.0f} latent unit(s) of q(z|x) at "
            "model.encoder_logvar_min (I_q is capped there)"
        )
    if metrics.get("floor_units_decoder", 0) > 0:
        parts.append(
            f"{metrics['floor_units_decoder']:.0f} output unit(s) of p(x|z) at "
            "model.decoder_logvar_min (distortion, and the MI it buys, is capped there)"
        )
    return (
        f"note: MI may stop at a variance floor: {'; '.join(parts)}; lower the floor to see "
        "whether the objective wants more"
    )


def sandwich_line(metrics: Mapping[str, Any]) -> str:
    """The MI sandwich in words: each estimate with its bound direction."""

    def show(key: str) -> str:
        value = metrics.get(key, math.nan)
        return "n/a" if not isinstance(value, float) or not math.isfinite(value) else f"{value:.3f}"

    return (
        f"MI sandwich (nats): lower mi {show('mi')} (cap log N {show('mi_cap')}), "
        f"mi_ba {show('mi_ba')} <= I_q(x;z) <= upper mi_upper {show('mi_upper')}, "
        f"rate {show('rate')}"
    )


def training_subset(train: Tensor, size: int, generator: torch.Generator, binary: bool) -> Tensor:
    """``size`` training points drawn once without replacement (binarised once if ``binary``)."""
    size = min(size, len(train))
    subset = train[torch.randperm(len(train), generator=generator)[:size]]
    return torch.bernoulli(subset, generator=generator) if binary else subset


def evaluate_model(
    model: InfoAEModel,
    eval_data: Tensor,
    train_data: Tensor | None,
    *,
    iw_samples: int,
    generator: torch.Generator,
    data_entropy: float | None,
) -> dict[str, float]:
    """Every metric on ``eval_data``, ``nll_train`` on ``train_data`` (NaN when None), floors."""
    if model.implicit:
        return evaluate_implicit(model, eval_data, train_data, generator, data_entropy)
    metrics = evaluate(
        model.encoder.encode,
        model.decoder.log_prob,
        eval_data,
        iw_samples=iw_samples,
        generator=generator,
        table=decoder_table(model.decoder),
        data_entropy=data_entropy,
    )
    metrics["nll_train"] = math.nan
    if train_data is not None and len(train_data) > 0:
        metrics["nll_train"] = negative_log_likelihood(
            train_data,
            model.encoder.encode,
            model.decoder.log_prob,
            decoder_table(model.decoder),
            iw_samples,
            generator,
        )
    return metrics | floor_report(model, eval_data)


def evaluate_implicit(
    model: InfoAEModel,
    eval_data: Tensor,
    train_data: Tensor | None,
    generator: torch.Generator,
    data_entropy: float | None,
) -> dict[str, float]:
    """The metrics an encoder without a density allows (AVB); the others are NaN.

    ``nll`` needs only p(z) p(x|z): exact by quadrature for a 1-D latent (``mog``); for a larger
    latent it is not estimated (importance sampling would need q(z|x)'s density as proposal).
    ``distortion``, ``mi_ba`` (any decoder gives a Barber-Agakov bound) and ``mmd_qz_pz`` come
    from samples z = f(x, ε); rate, elbo, mi, mi_upper, kl_qz_pz, active units need the density.
    """
    z = model.encoder.sample(eval_data, generator)  # (N, Z)
    distortion = float(-model.decoder.log_prob(eval_data, z).mean())
    prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    nan = math.nan

    def nll(x: Tensor | None) -> float:
        if x is None or len(x) == 0 or model.z_dim != 1:
            return nan
        return float(-log_marginal_quadrature(decoder_table(model.decoder), x).mean())

    metrics = dict.fromkeys(("elbo", "rate", "mi", "mi_upper", "kl_qz_pz", "active_units"), nan)
    metrics |= {
        "nll": nll(eval_data),
        "nll_train": nll(train_data),
        "distortion": distortion,
        "mi_cap": math.log(len(eval_data)),
        "mi_ba": barber_agakov(data_entropy, distortion),
        "mmd_qz_pz": float(mmd_unbiased(z[:MMD_MAX_POINTS], prior[:MMD_MAX_POINTS], "imq")),
    }
    decoder = 0
    if isinstance(model.decoder, GaussianDecoder):
        decoder = units_at_floor(model.decoder(z).logvar, model.config.decoder_logvar_min)
    return metrics | {
        "floor_units": float(decoder),
        "floor_units_encoder": 0.0,
        "floor_units_decoder": float(decoder),
    }
