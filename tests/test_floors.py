"""Variance floors as `model` keys, `floor_units` in every evaluation, and `nll_train`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import write_idx_dir
from test_train import tiny

from objectives.config import ConfigError, ModelConfig
from objectives.networks import InfoAEModel
from training.evaluation import floor_note, floor_report, units_at_floor
from training.metrics import negative_log_likelihood, pairwise_table
from training.run import train
from training.trainer import Trainer


def test_units_at_floor_counts_columns_whose_median_is_within_the_tolerance() -> None:
    logvar = torch.tensor(
        [[-10.0, -9.5, -3.0, -10.0], [-10.0, -8.5, -3.0, 0.0], [-9.9, -8.0, -3.0, 0.0]]
    )  # medians: -10, -8.5, -3, 0
    assert units_at_floor(logvar, -10.0, tolerance=1.0) == 1
    assert units_at_floor(logvar, -10.0, tolerance=1.6) == 2
    assert units_at_floor(logvar, -3.5, tolerance=1.0) == 3


def test_the_floors_are_model_keys_the_networks_obey() -> None:
    config = ModelConfig(hidden=8, z_dim=2, encoder_logvar_min=-2.0, decoder_logvar_min=-1.0)
    model = InfoAEModel(3, config, "gaussian")
    with torch.no_grad():  # push both networks' raw log-variances far below any floor
        model.encoder.net[-1].bias[2:] = -1e3
        model.decoder.net[-1].bias[3:] = -1e3
    x = torch.randn(50, 3)
    _, logvar = model.encoder.encode(x)
    assert logvar.min() >= -2.0 and logvar.max() < -2.0 + 0.01
    assert model.decoder(torch.randn(50, 2)).logvar.min() >= -1.0
    report = floor_report(model, x)
    assert report == {"floor_units": 5.0, "floor_units_encoder": 2.0, "floor_units_decoder": 3.0}
    note = floor_note(report)
    assert note is not None
    assert "model.encoder_logvar_min" in note and "model.decoder_logvar_min" in note
    assert floor_note({"floor_units": 0.0}) is None
    assert floor_note({"floor_units": math.nan}) is None


def test_a_floor_at_or_above_its_ceiling_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="model.decoder_logvar_min"):
        ModelConfig(decoder_logvar_min=5.0, decoder_logvar_max=5.0)
    with pytest.raises(ConfigError, match="model.encoder_logvar_min"):
        tiny(model={"encoder_logvar_min": 9.0})


def test_train_prints_the_mi_sandwich_and_the_floor_that_binds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """mog's components have log σ² = log 1/4 = -1.39: a decoder floored at -1 sits on it."""
    final = train(
        tiny(
            objective={"preset": "beta-vae", "beta": 0.3},
            model={"decoder_logvar_min": -1.0},
            train={"steps": 300, "eval_every": 300, "threads": 1},
        )
    )
    assert final["floor_units_decoder"] == 1.0 and final["floor_units"] == 1.0
    assert final["mi"] <= final["mi_upper"] and math.isfinite(final["mi_ba"])
    err = capsys.readouterr().err
    assert "MI sandwich" in err and "lower mi" in err and "upper mi_upper" in err
    assert "note: MI may stop at a variance floor" in err and "model.decoder_logvar_min" in err


def test_nll_train_is_the_exact_nll_of_a_fixed_training_subset() -> None:
    experiment = tiny(train={"nll_train_size": 40, "steps": 50, "eval_every": 50})
    trainer, again = Trainer(experiment), Trainer(experiment)
    member = trainer.members[0]  # a plain run: a population of one
    subset = member.train_eval_data
    assert subset.shape == (40, 1)
    torch.testing.assert_close(
        subset, again.members[0].train_eval_data, rtol=0, atol=0
    )  # fixed by seed
    rows = {tuple(row) for row in member.dataset.train.tolist()}
    assert all(tuple(row) in rows for row in subset.tolist())  # drawn from the training set
    trainer.train_steps(50)
    subset_before = subset.clone()
    (metrics,) = trainer.evaluate()  # evaluation reads the member's plain networks
    torch.testing.assert_close(member.train_eval_data, subset_before, rtol=0, atol=0)
    with torch.no_grad():
        expected = negative_log_likelihood(
            subset,
            member.model.encoder.encode,
            member.model.decoder.log_prob,
            pairwise_table(member.model.decoder.log_prob),  # row by row: an independent path
            1,
            None,
        )
    assert metrics["nll_train"] == pytest.approx(expected, abs=1e-4)
    off = Trainer(tiny(train={"nll_train_size": 0}))
    assert math.isnan(off.evaluate()[0]["nll_train"])


def test_nll_train_binarises_its_image_subset_once(tmp_path: Path) -> None:
    idx_dir = write_idx_dir(tmp_path, train=64, test=32)
    trainer = Trainer(tiny(data_dir=idx_dir, train={"nll_train_size": 16}))
    subset = trainer.members[0].train_eval_data
    assert subset.shape[0] == 16 and set(subset.unique().tolist()) <= {0.0, 1.0}
    assert math.isfinite(trainer.evaluate()[0]["nll_train"])
