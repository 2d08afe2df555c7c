"""Estimators of the family's terms: closed forms, gradient directions, and one family-wide suite.

The family-wide tests are parametrised over `ESTIMATORS`, the registry itself: a new term is
covered by adding its registry line. Tractable forms are written by hand (dicts term -> coef).
Each loss here is a population of one (`Plain`): a (B, D) batch is member 0's (1, B, D).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from objectives.config import ModelConfig, ObjectiveConfig
from objectives.divergences import (
    AdversarialDivergence,
    MaximumMeanDiscrepancy,
    density_ratio_kl,
    js_estimate,
    reverse_density_ratio_kl,
)
from objectives.estimators import ESTIMATORS, expected_gradient_groups, information_preference
from objectives.loss import FamilyLoss, StepLosses, build_discriminators, loss_terms
from objectives.mmd import mmd_unbiased
from objectives.networks import Bernoulli, Discriminator, InfoAEModel
from objectives.record import ForwardRecord, gaussian_kl
from objectives.stacked import StackedModel

TINY = ModelConfig(hidden=8, layers=1, z_dim=2, discriminator_hidden=8)
OBJECTIVE = ObjectiveConfig(preset="elbo")
ELBO = {"E_q[log p(x|z)]": -1.0, "E_q[log q(z|x)]": 1.0, "E_q[log p(z)]": -1.0}


def beta_vae(beta: float) -> dict[str, float]:
    return {"E_q[log p(x|z)]": -1.0, "E_q[log q(z|x)]": beta, "E_q[log p(z)]": -beta}


class Plain:
    """A `FamilyLoss` of one member, called with a (B, D) batch and one generator; its
    losses and breakdown are member 0's scalars."""

    def __init__(self, form, model: InfoAEModel, objective=OBJECTIVE, stacked=None) -> None:
        self.model = stacked or StackedModel([model])
        terms = loss_terms([form])
        discriminators = {} if model is None else build_discriminators(terms, model)
        self.loss = FamilyLoss([form], self.model, [objective], [discriminators])
        self.terms = self.loss.terms

    def record(self, x, generator=None) -> ForwardRecord:
        return self.loss.record(x[None], [generator or torch.Generator().manual_seed(0)])

    def __call__(self, x, generator=None) -> StepLosses:
        return scalars(self.loss.step(self.record(x, generator)))

    def parameter_groups(self):
        return self.loss.parameter_groups()


def scalars(out: StepLosses) -> StepLosses:
    return StepLosses(
        {k: v[0] for k, v in out.losses.items()}, {k: v[0] for k, v in out.breakdown.items()}
    )


def _setup(likelihood: str, form, objective=OBJECTIVE, x_dim=4, seed=0):
    """(the stacked model, its loss, a batch)."""
    torch.manual_seed(seed)
    model = InfoAEModel(x_dim, TINY, likelihood)
    family = Plain(form, model, objective)
    model = family.model
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(16, x_dim, generator=g) < 0.5).float()
    if likelihood == "gaussian":
        x = torch.randn(16, x_dim, generator=g)
    return model, family, x


def _reached(params) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)


# --------------------------------------------------------------------------- closed forms


def test_kl_of_equal_gaussians_is_zero() -> None:
    torch.testing.assert_close(gaussian_kl(torch.zeros(5, 3), torch.zeros(5, 3)), torch.zeros(5))


@pytest.mark.parametrize("m", [0.5, 1.0, -2.0])
def test_kl_of_shifted_unit_gaussian_is_half_square(m: float) -> None:
    kl = gaussian_kl(torch.full((1, 1), m), torch.zeros(1, 1))
    torch.testing.assert_close(kl, torch.tensor([m**2 / 2]))


def test_analytic_prior_and_entropy_terms_match_monte_carlo() -> None:
    """E_q[log q(z|x)] and E_q[log p(z)] are analytic; sampling agrees; their gap is the rate."""
    model, family, x = _setup("gaussian", ELBO)
    x = x[:2].repeat_interleave(20_000, 0)  # many z per x
    record = family.record(x, torch.Generator().manual_seed(3))
    with torch.no_grad():
        post = ESTIMATORS["E_q[log q(z|x)]"].likelihood(record)
        prior = ESTIMATORS["E_q[log p(z)]"].likelihood(record)
        z = record.z_q
        torch.testing.assert_close(post, record.posterior.log_prob(z).mean(-1), atol=0.02, rtol=0)
        logp = -0.5 * (math.log(2 * math.pi) + z**2).sum(-1)  # log N(z; 0, I)
        torch.testing.assert_close(prior, logp.mean(-1), atol=0.02, rtol=0)
        rate = gaussian_kl(record.posterior.mean, record.posterior.logvar).mean(-1)
        torch.testing.assert_close(post - prior, rate)


def test_bernoulli_entropy_matches_monte_carlo() -> None:
    logits = torch.tensor([[-3.0, -0.5, 0.0, 1.0, 4.0]])
    samples = Bernoulli(logits.expand(100_000, 5)).sample(torch.Generator().manual_seed(0), False)
    monte_carlo = -Bernoulli(logits).log_prob(samples).mean()
    torch.testing.assert_close(Bernoulli(logits).entropy()[0], monte_carlo, atol=0.02, rtol=0)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_of_a_sample_with_itself_is_near_zero(kernel: str) -> None:
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    assert abs(float(mmd_unbiased(x, x, kernel))) < 0.01


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_separates_shifted_gaussians(kernel: str) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 1, generator=g), torch.randn(200, 1, generator=g) + 3.0
    same = torch.randn(200, 1, generator=g)
    apart, close = float(mmd_unbiased(x, y, kernel)), float(mmd_unbiased(x, same, kernel))
    assert apart > 0.3 and apart > 20 * abs(close), (apart, close)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_unbiased_mmd_averages_to_zero_for_one_distribution(kernel: str) -> None:
    g = torch.Generator().manual_seed(1)
    values = torch.stack(
        [
            mmd_unbiased(torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g), kernel)
            for _ in range(400)
        ]
    )
    standard_error = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean())) < 4 * standard_error, (float(values.mean()), standard_error)
    assert (values < 0).any(), "an unbiased estimate of a zero MMD² must sometimes be negative"


def _trained(kind: str, shift: float, steps: int = 300, seed: int = 0) -> AdversarialDivergence:
    """A discriminator between q = N(0, 1) and p = N(shift, 1), trained on fresh samples."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    config = ModelConfig(discriminator_hidden=32, layers=1, activation="tanh")
    divergence = AdversarialDivergence(kind, [Discriminator(1, config)])
    optimizer = torch.optim.Adam(divergence.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 - t / steps)
    for _ in range(steps):
        q, p = torch.randn(1, 512, 1, generator=g), torch.randn(1, 512, 1, generator=g) + shift
        optimizer.zero_grad()
        divergence.discriminator_loss(q, p).sum().backward()
        optimizer.step()
        schedule.step()
    return divergence


def _fresh(n: int = 20_000, shift: float = 1.0, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, n, 1, generator=g), torch.randn(1, n, 1, generator=g) + shift


@pytest.mark.parametrize("kind", ["KL(q||p)", "KL(p||q)"])
def test_density_ratio_kl_between_unit_gaussians(kind: str) -> None:
    """KL(N(0,1)||N(1,1)) = KL(N(1,1)||N(0,1)) = ½ (Section 4.2: nε²/2 with n = ε = 1)."""
    divergence = _trained(kind, shift=1.0)
    q, p = _fresh()
    with torch.no_grad():
        estimate = float(divergence(q, p).estimate)
        logits_q, logits_p = divergence.logits(q), divergence.logits(p)
    assert abs(estimate - 0.5) < 0.05, estimate
    pure = density_ratio_kl(logits_q) if kind == "KL(q||p)" else reverse_density_ratio_kl(logits_p)
    assert math.isclose(float(pure), estimate, rel_tol=1e-6)


@pytest.mark.parametrize("kind", ["KL(q||p)", "KL(p||q)", "JS"])
def test_divergence_gradients_pull_both_sides_together(kind: str) -> None:
    """q = N(a, 1), p = N(1 + b, 1) at a = b = 0: d KL/da = -1 and d KL/db = +1 in both
    directions, including the side each KL estimate does not sample (the dual-form gradient).
    The non-saturating JS game has other magnitudes but the same signs."""
    divergence = _trained(kind, shift=1.0)
    q, p = _fresh()
    a, b = torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)
    surrogate = divergence(q + a, p + b).surrogate.sum()
    grads = torch.autograd.grad(surrogate, (a, b, *divergence.parameters()), allow_unused=True)
    grad_a, grad_b = float(grads[0]), float(grads[1])
    assert all(g is None for g in grads[2:]), "the model side's loss leaves the discriminator be"
    if kind == "JS":
        assert grad_a < 0 < grad_b, (grad_a, grad_b)
    else:
        assert abs(grad_a + 1) < 0.15 and abs(grad_b - 1) < 0.15, (grad_a, grad_b)


def test_js_of_identical_distributions_is_zero() -> None:
    divergence = _trained("JS", shift=0.0)
    q, p = _fresh(shift=0.0)
    with torch.no_grad():
        assert abs(float(divergence(q, p).estimate)) < 0.01


def test_js_of_far_apart_distributions_is_log_two() -> None:
    divergence = _trained("JS", shift=20.0)
    q, p = _fresh(shift=20.0)
    with torch.no_grad():
        estimate = float(divergence(q, p).estimate)
        logits = divergence.logits(q), divergence.logits(p)
    assert abs(estimate - math.log(2)) < 0.01, estimate
    assert math.isclose(float(js_estimate(*logits)), estimate, rel_tol=1e-6)


def test_mmd_module_is_the_u_statistic_with_the_default_scale() -> None:
    q, p = _fresh(n=100)
    module = MaximumMeanDiscrepancy(1, "rbf")
    assert module.scale == 2.0  # 2 · dim · σ², σ = 1 (WAE)
    torch.testing.assert_close(module(q, p).estimate, mmd_unbiased(q, p, "rbf", 2.0))


# --------------------------------------------------------------------------- gradient directions


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_gradient_on_ep_log_q_moves_the_decoder_the_right_way(likelihood: str) -> None:
    """Steps on -E_p[log q(z|x)] w.r.t. p only increase E_p[log q(z|x)]: the gradient reaches
    the decoder through relaxed (Bernoulli) or reparameterised (Gaussian) x ~ p(x|z)."""
    form = {"E_p[log q(z|x)]": -1.0}
    model, family, _ = _setup(likelihood, form, x_dim=6)
    x = torch.zeros(4000, 6)

    def value() -> float:
        with torch.no_grad():
            out = family(x, torch.Generator().manual_seed(123))
            return float(out.breakdown["E_p[log q(z|x)]"])

    before = value()
    optimizer = torch.optim.SGD(model.decoder.parameters(), lr=0.5)
    train = torch.Generator().manual_seed(0)
    for _ in range(20):
        optimizer.zero_grad()
        family(x[:256], train).losses["model"].backward()
        optimizer.step()
    assert value() > before + 0.02, (before, value())


STRAIGHT = "straight-through"  # the option; the default is the score-function gradient


def test_generated_bernoulli_x_is_binary_in_value_and_relaxed_in_gradient() -> None:
    """Straight-through x ~ p(x|z): the binary Concrete draw thresholded at ½ in value, the
    relaxed draw's gradient, from the same uniform noise (written out here)."""
    _, family, x = _setup(
        "bernoulli",
        {**ELBO, "E_p[log q(z|x)]": -1.0},
        x_dim=6,
        objective=ObjectiveConfig(preset="elbo", x_gradient=STRAIGHT),
    )
    record = family.record(x)
    u = record.noise["x_p"].clamp(1e-6, 1 - 1e-6)
    logits = record.likelihood_p.logits
    relaxed = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / 0.5)
    assert set(record.x_p.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(record.x_p, (relaxed > 0.5).float(), rtol=0, atol=0)
    assert not set(relaxed.unique().tolist()) <= {0.0, 1.0}
    (gradient,) = torch.autograd.grad(record.x_p.sum(), logits, retain_graph=True)
    (expected,) = torch.autograd.grad(relaxed.sum(), logits)
    torch.testing.assert_close(gradient, expected)


# --------------------------------------------------------------------------- family-wide


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("term", list(ESTIMATORS))
def test_every_term_gives_finite_losses_and_reaches_exactly_its_groups(
    term: str, likelihood: str
) -> None:
    model, family, x = _setup(likelihood, {term: 1.0})
    out = family(x, torch.Generator().manual_seed(0))
    assert set(out.breakdown) == {term, "loss"}
    assert all(torch.isfinite(v).all() for v in [*out.losses.values(), *out.breakdown.values()])
    assert all(not v.requires_grad for v in out.breakdown.values()), "breakdown is detached"
    groups = family.parameter_groups()
    model_params = groups["p"] + groups["q"]
    out.losses["model"].backward(inputs=model_params)
    reached = {g for g in ("p", "q") if _reached(groups[g])}
    assert reached == expected_gradient_groups({term: 1.0}), reached


@pytest.mark.parametrize("term", [t for t, e in ESTIMATORS.items() if e.divergence])
def test_each_discriminator_loss_moves_only_its_discriminator(term: str) -> None:
    form = {term: 1.0, "E_q[log p(x|z)]": -1.0, "KL(q(z)||p(z))": 0.5}
    model, family, x = _setup("bernoulli", form)
    groups = family.parameter_groups()
    discriminators = [g for g in groups if g.startswith("disc:")]
    losses = family(x, torch.Generator().manual_seed(0)).losses
    assert set(losses) == {"model", *discriminators}
    for name in discriminators:
        losses[name].backward()  # no `inputs`: the loss itself must not reach other groups
        for group, params in groups.items():
            assert _reached(params) == (group == name), (name, group)
            for p in params:
                p.grad = None
    if ESTIMATORS[term].divergence == "MMD":
        assert f"disc:{term}" not in groups, "a kernel needs no discriminator"


def test_breakdown_has_every_term_and_state_dict_holds_the_discriminators() -> None:
    form = {t: 0.1 for t in ESTIMATORS}
    model, family, x = _setup("bernoulli", form)
    out = family(x, torch.Generator().manual_seed(0))
    assert set(out.breakdown) == {*ESTIMATORS, "loss"}
    expected = sum(0.1 * out.breakdown[t] for t in ESTIMATORS)
    torch.testing.assert_close(out.breakdown["loss"], expected)  # surrogates keep the values
    keys = family.loss.state_dict().keys()
    assert any(k.startswith("divergences.JS(q(x,z)||p(x,z)).discriminator") for k in keys)
    assert not any("encoder" in k or "decoder" in k for k in keys), "the model is the caller's"


def test_loss_is_the_weighted_sum_of_the_estimates() -> None:
    form = {**beta_vae(2.0), "MMD(q(z)||p(z))": 10.0, "KL(p(z)||q(z))": 3.0, "JS(q(x)||p(x))": 2}
    _, family, x = _setup("gaussian", form)
    out = family(x, torch.Generator().manual_seed(0))
    expected = sum(c * out.breakdown[t] for t, c in form.items())
    torch.testing.assert_close(out.breakdown["loss"], expected)


def test_forward_is_deterministic_given_the_generator() -> None:
    form = {**ELBO, "E_p[log q(z|x)]": -1.0, "MMD(q(x,z)||p(x,z))": 5.0}
    _, family, x = _setup("bernoulli", form)
    first = family(x, torch.Generator().manual_seed(5)).breakdown
    second = family(x, torch.Generator().manual_seed(5)).breakdown
    other = family(x, torch.Generator().manual_seed(6)).breakdown
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["loss"], other["loss"])


def test_the_record_computes_only_what_the_terms_read() -> None:
    model, family, x = _setup("bernoulli", ELBO)
    record = family.record(x)
    family.loss.step(record)
    computed = set(vars(record)) - {f.name for f in dataclasses.fields(record)}
    assert computed == {"posterior", "z_q", "likelihood_q"}, computed


def test_term_names_are_whitespace_insensitive_and_unknown_terms_refused() -> None:
    _, family, _ = _setup("gaussian", {"E_q[ log p(x | z) ]": -1.0, "KL(q(z) || p(z))": 1})
    assert family.terms == ["E_q[log p(x|z)]", "KL(q(z)||p(z))"]
    with pytest.raises(ValueError, match="unknown tractable term"):
        _setup("gaussian", {"KL(q(z|x)||p(z|x))": 1.0})


def test_set_coefficients_moves_the_weights_of_the_built_terms() -> None:
    _, family, x = _setup("gaussian", {**ELBO, "KL(q(z)||p(z))": 0.0})
    new = {**ELBO, "KL(q(z)||p(z))": 2.0}
    family.loss.set_coefficients(torch.tensor([[new[t] for t in family.terms]]))
    out = family(x, torch.Generator().manual_seed(0))
    expected = sum(c * out.breakdown[t] for t, c in new.items())
    torch.testing.assert_close(out.breakdown["loss"], expected)


def test_a_form_of_constants_still_backpropagates() -> None:
    model, family, x = _setup("gaussian", {"E_p[log p(z)]": 1.0})
    out = family(x)
    out.losses["model"].backward(inputs=list(model.parameters()))
    assert not _reached(model.parameters())
    expected = -(math.log(2 * math.pi) + 1)  # -Z/2 (log 2π + 1) with Z = 2
    assert math.isclose(float(out.breakdown["E_p[log p(z)]"]), expected, rel_tol=1e-6)


def test_expected_gradient_groups() -> None:
    assert expected_gradient_groups(ELBO) == {"p", "q"}
    assert expected_gradient_groups({"E_q[log p(z)]": -1, "E_q[log q(z|x)]": 1}) == {"q"}
    assert expected_gradient_groups({"E_p[log p(z)]": 3.0}) == set()
    assert expected_gradient_groups({"E_p[log p(x,z)]": 1.0}) == {"p"}
    assert expected_gradient_groups({"JS(q(x,z)||p(x,z))": 1.0}) == {"p", "q"}
    assert expected_gradient_groups({"KL(p(z)||q(z))": 1.0}) == {"q"}
    assert expected_gradient_groups({"MMD(q(x)||p(x))": 1.0}) == {"p"}
    # E_q[log p(x,z)] - E_q[log p(x|z)] = E_q[log p(z)]: the decoder's part cancels.
    assert expected_gradient_groups({"E_q[log p(x,z)]": 1, "E_q[log p(x|z)]": -1}) == {"q"}


# --------------------------------------------------------------------------- the MI upper bound


def test_information_preference_reads_alpha2_off_tractable_forms() -> None:
    assert information_preference(ELBO) == 0.0
    assert information_preference(beta_vae(0.25)) == -0.75  # (β - 1) I_q, Theorem 1
    aae = {"E_q[log p(x|z)]": -1.0, "JS(q(z)||p(z))": 1.0}
    assert information_preference(aae) == -1.0  # InfoVAE with α = -1 (Section 2.5)
    vmi = {"E_p[log q(z|x)]": -1.0}
    assert information_preference(vmi) == 0.0  # rewards I_p, not I_q


def test_information_preference_agrees_with_the_compiler_on_every_preset() -> None:
    compile_module = pytest.importorskip("objectives.compile")
    presets = pytest.importorskip("objectives.presets")
    for name in presets.PRESETS:
        objective = ObjectiveConfig(preset=name)
        lagrangian = presets.resolve(objective)
        form = compile_module.compile_lagrangian(lagrangian).tractable_form
        if all(t in ESTIMATORS for t in form):
            assert information_preference(form) == float(lagrangian.alpha2), name


def _rate(model: StackedModel, x: torch.Tensor) -> float:
    with torch.no_grad():
        posterior = model.posterior(x[None])
        return float(gaussian_kl(posterior.mean, posterior.logvar).mean())


def _encoder_gradient(family: Plain, model: StackedModel, x: torch.Tensor):
    loss = family(x, torch.Generator().manual_seed(9)).losses["model"]
    return torch.autograd.grad(loss, list(model.encoder.parameters()))


def _capped(cap: float | None) -> ObjectiveConfig:
    return ObjectiveConfig(preset="beta-vae", mi_upper_bound=cap)


def test_mi_cap_stops_the_reward_from_pushing_the_rate_up() -> None:
    """Loss -R (all reward): below the cap its gradient raises R; beyond it the gradient is 0."""
    reward = {"E_q[log q(z|x)]": -1.0, "E_q[log p(z)]": 1.0}
    model, free, x = _setup("gaussian", reward)
    rate = _rate(model, x)
    capped = Plain(reward, None, _capped(rate / 2), stacked=model)
    for gradient in _encoder_gradient(capped, model, x):
        torch.testing.assert_close(gradient, torch.zeros_like(gradient))
    optimizer = torch.optim.SGD(model.encoder.parameters(), lr=0.1)
    optimizer.zero_grad()
    free(x, torch.Generator().manual_seed(9)).losses["model"].backward()
    optimizer.step()
    assert _rate(model, x) > rate


def test_mi_cap_turns_an_information_maximising_beta_vae_into_the_elbo_past_the_cap() -> None:
    model, beta_half, x = _setup("gaussian", beta_vae(0.5))
    elbo = Plain(ELBO, None, OBJECTIVE, stacked=model)
    rate = _rate(model, x)
    past = Plain(beta_vae(0.5), None, _capped(rate / 2), stacked=model)
    below = Plain(beta_vae(0.5), None, _capped(rate * 2), stacked=model)
    for capped, reference in ((past, elbo), (below, beta_half)):
        ours, theirs = _encoder_gradient(capped, model, x), _encoder_gradient(reference, model, x)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b)
    penalty = float(past(x, torch.Generator().manual_seed(9)).breakdown["mi_upper_bound_penalty"])
    assert math.isclose(penalty, 0.5 * (rate - rate / 2), rel_tol=1e-5)  # -α2 · (R - C)


def test_mi_cap_does_nothing_without_an_information_reward() -> None:
    model, plain, x = _setup("gaussian", beta_vae(4.0))
    capped = Plain(beta_vae(4.0), None, _capped(1e-6), stacked=model)
    assert float(capped.loss.information_reward()) == 0.0
    out = capped(x, torch.Generator().manual_seed(9)).breakdown
    assert float(out["mi_upper_bound_penalty"]) == 0.0
    reference = plain(x, torch.Generator().manual_seed(9)).breakdown
    torch.testing.assert_close(out["loss"], reference["loss"], rtol=0, atol=0)
