"""The family as algebra: term space, compiler, presets (paper Sections 2-3, Appendix B)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objectives.compile import (
    compile_lagrangian,
    dimension_table,
    form_vector,
    is_equivalent,
    rank,
    term_form,
)
from objectives.presets import PRESETS, get_preset
from objectives.terms import (
    FamilyError,
    Lagrangian,
    add,
    canonical_term,
    parse_divergence,
    term_vector,
)
from objectives.toolboxes import LAGRANGIAN_TERMS, elementary_transformations

F = Fraction
Q_DECODER, Q_ENCODER, Q_PRIOR = "E_q[log p(x|z)]", "E_q[log q(z|x)]", "E_q[log p(z)]"
P_ENCODER = "E_p[log q(z|x)]"


def lagrangian(alpha1: float = 0, alpha2: float = 0, /, **lambdas: float) -> Lagrangian:
    return Lagrangian.from_values(alpha1, alpha2, lambdas)


def form(lagrangian_: Lagrangian) -> dict[str, Fraction]:
    return compile_lagrangian(lagrangian_).tractable_form


# --------------------------------------------------------------------------- the algebra


def test_p_has_ten_independent_columns_of_twenty_coordinates() -> None:
    columns = elementary_transformations()
    assert len(columns) == 10
    assert rank(columns) == 10


def test_appendix_b_dimension_table_is_computed() -> None:
    assert [d for _, d in dimension_table()] == [13, 13, 17, 17, 18, 18]


def test_term_names_are_whitespace_insensitive_and_symmetric_kinds_canonical() -> None:
    assert canonical_term(" KL( q(x|z) || p(x|z) ) ") == "KL(q(x|z)||p(x|z))"
    assert canonical_term("JS(p(x)||q(x))") == "JS(q(x)||p(x))"
    assert canonical_term("MMD(p(z,x)||q(z,x))") == "MMD(q(x,z)||p(x,z))"
    assert parse_divergence("KL(p(x)||q(x))").first == "p"


@pytest.mark.parametrize(
    "bad",
    ["KL(q(w)||p(w))", "KL(q(x)||q(x))", "KL(q(x)||p(z))", "TV(q(x)||p(x))", "I_r"],
)
def test_unknown_terms_are_refused_with_the_name(bad: str) -> None:
    with pytest.raises(FamilyError, match="term"):
        Lagrangian.from_values(0, 0, {bad: 1, "KL(q(x,z)||p(x,z))": 1})


def test_kl_of_a_joint_splits_by_the_chain_rule() -> None:
    """KL(p(x,z)||q(x,z)) ≡ KL(p(x)||q(x)) + E_p KL(p(z|x)||q(z|x)) (Definition 8)."""
    joint = term_vector("KL(p(x,z)||q(x,z))")
    parts = add(term_vector("KL(p(x)||q(x))"), term_vector("KL(p(z|x)||q(z|x))"))
    assert is_equivalent(joint, parts)
    assert not is_equivalent(joint, term_vector("KL(p(x)||q(x))"))


# --------------------------------------------------------------------------- membership


def test_non_positive_multiplier_is_refused() -> None:
    with pytest.raises(FamilyError, match="must be > 0"):
        compile_lagrangian(lagrangian(0, 0, **{"KL(q(x,z)||p(x,z))": 0.0}))
    with pytest.raises(FamilyError, match="must be > 0"):
        compile_lagrangian(lagrangian(0, 0, **{"KL(q(x,z)||p(x,z))": -2}))


def test_objective_without_a_constraint_set_is_refused() -> None:
    with pytest.raises(FamilyError, match="no constraint set"):
        compile_lagrangian(lagrangian(0, -1, **{"KL(q(z)||p(z))": 1}))
    with pytest.raises(FamilyError, match="no constraint set"):  # C3 needs the x|z partner
        compile_lagrangian(lagrangian(0, 0, **{"KL(q(z)||p(z))": 1, "KL(p(z|x)||q(z|x))": 1}))


def test_constraint_sets_count_any_strict_divergence_either_way() -> None:
    c = compile_lagrangian(lagrangian(0, 0, **{"MMD(p(z)||q(z))": 1, "KL(p(x|z)||q(x|z))": 1}))
    assert c.constraint_sets == ("C3",)
    c = compile_lagrangian(lagrangian(0, 0, **{"JS(q(x)||p(x))": 1, "KL(q(z|x)||p(z|x))": 1}))
    assert c.constraint_sets == ("C2",)


# --------------------------------------------------------------------------- pinned cases


def test_elbo_forms_12_and_13_are_the_same_likelihood_based_loss() -> None:
    elbo = {Q_DECODER: -1, Q_ENCODER: 1, Q_PRIOR: -1}
    for name, constraint in (("elbo", "C3"), ("elbo-13", "C2")):
        compiled = compile_lagrangian(get_preset(name)())
        assert compiled.toolbox == "likelihood-based"
        assert compiled.constraint_set == constraint
        assert compiled.tractable_form == elbo


@pytest.mark.parametrize("beta", [0.25, 1.0, 4.0, 37.5])
def test_beta_elbo_is_likelihood_based_for_any_beta(beta: float) -> None:
    """Eq. 14 = Eq. 15: -E_q log p(x|z) + β E_q log q(z|x) - β E_q log p(z)."""
    compiled = compile_lagrangian(get_preset("beta-vae")(beta=beta))
    assert compiled.toolbox == "likelihood-based"
    b = F(repr(beta))
    assert compiled.tractable_form == {Q_DECODER: -1, Q_ENCODER: b, Q_PRIOR: -b}


def test_kl_infovae_is_unary_in_general_but_likelihood_based_on_its_special_line() -> None:
    """Theorem 2: the (λ1-α-1) KL(q(z)||p(z)) and λ2 KL(p(z)||q(z)) terms vanish when
    λ1 = α + 1 and λ2 = 0, leaving a β-ELBO with β = α + 1."""
    assert (
        compile_lagrangian(get_preset("kl-infovae")(alpha=0.5)).toolbox == "unary-likelihood-free"
    )
    alpha = 0.3
    special = lagrangian(0, alpha, **{"KL(q(x|z)||p(x|z))": 1, "KL(q(z)||p(z))": alpha + 1})
    compiled = compile_lagrangian(special)
    assert compiled.toolbox == "likelihood-based"
    assert compiled.tractable_form == {Q_DECODER: -1, Q_ENCODER: F("1.3"), Q_PRIOR: F("-1.3")}


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-0.99, max_value=50, allow_nan=False))
def test_float_noise_never_decides_the_toolbox(alpha: float) -> None:
    """λ1 = α + 1 computed in floating point (as a search would) stays likelihood-based."""
    special = lagrangian(0, alpha, **{"KL(q(x|z)||p(x|z))": 1, "KL(q(z)||p(z))": alpha + 1})
    assert compile_lagrangian(special).toolbox == "likelihood-based"


def test_kl_of_q_joint_alone_is_the_negative_elbo_and_of_p_joint_needs_the_binary_toolbox() -> None:
    q_joint = compile_lagrangian(lagrangian(0, 0, **{"KL(q(x,z)||p(x,z))": 1}))
    assert q_joint.toolbox == "likelihood-based"
    assert q_joint.tractable_form == {Q_DECODER: -1, Q_ENCODER: 1, Q_PRIOR: -1}
    p_joint = compile_lagrangian(lagrangian(0, 0, **{"KL(p(x,z)||q(x,z))": 1}))
    assert p_joint.toolbox == "binary-likelihood-free"
    assert p_joint.tractable_form == {"KL(p(x,z)||q(x,z))": 1}


def test_divergence_on_a_conditional_other_than_kl_is_intractable_and_named() -> None:
    compiled = compile_lagrangian(
        lagrangian(0, 0, **{"MMD(q(z|x)||p(z|x))": 2, "KL(q(x)||p(x))": 1})
    )
    assert compiled.toolbox == "intractable"
    assert compiled.residual == {"MMD(q(z|x)||p(z|x))": 2}
    assert compiled.tractable_form == {"KL(q(x)||p(x))": 1}


@pytest.mark.parametrize(
    ("term", "toolbox"),
    [
        ("MMD(q(z)||p(z))", "unary-likelihood-free"),
        ("JS(q(x)||p(x))", "unary-likelihood-free"),
        ("JS(q(x,z)||p(x,z))", "binary-likelihood-free"),
        ("MMD(q(x|z)||p(x|z))", "intractable"),
    ],
)
def test_non_kl_divergences_take_the_toolbox_of_their_variables(term: str, toolbox: str) -> None:
    """Section 3.4: MMD/JS on marginals unary, on the joint binary, on conditionals none."""
    tractable, residual = term_form(term)
    if toolbox == "intractable":
        assert residual == {term: 1} and not tractable
    else:
        assert tractable == {term: 1} and not residual


# --------------------------------------------------------------------------- presets vs paper

# (preset, parameters, toolbox, the tractable form the paper prints, where)
PAPER_FORMS = [
    ("elbo", {}, "likelihood-based", {Q_DECODER: -1, Q_ENCODER: 1, Q_PRIOR: -1}, "Eq. 12 / Eq. 1"),
    ("elbo-13", {}, "likelihood-based", {Q_DECODER: -1, Q_ENCODER: 1, Q_PRIOR: -1}, "Eq. 13"),
    (
        "beta-vae",
        {"beta": 3},
        "likelihood-based",
        {Q_DECODER: -1, Q_ENCODER: 3, Q_PRIOR: -3},
        "Eq. 14-15",
    ),
    # Theorem 1 prints L_VMI = E_p[log q(z|x)]; expanding -I_p + KL(p(z|x)||q(z|x)) (and
    # Theorem 2, which expands the same two terms) gives -E_p[log q(z|x)]: the sign in
    # Theorem 1 is a typo. Here VMI is added with weight 2 to the ELBO (see the preset).
    (
        "vmi",
        {"weight": 2},
        "likelihood-based",
        {Q_DECODER: -1, Q_ENCODER: 1, Q_PRIOR: -1, P_ENCODER: -2},
        "Theorem 1",
    ),
    (
        "kl-infogan",
        {"lambda1": 2, "lambda2": 3},
        "unary-likelihood-free",
        {P_ENCODER: -1, "KL(p(x)||q(x))": 2, "KL(q(x)||p(x))": 3},
        "Theorem 2, InfoGAN",
    ),
    (
        "infogan",
        {"lambda1": 1},
        "unary-likelihood-free",
        {P_ENCODER: -1, "JS(q(x)||p(x))": 1},
        "Section 2.5 item 3",
    ),
    (
        "kl-infovae",
        {"alpha": 2, "lambda1": 5, "lambda2": 7},
        "unary-likelihood-free",
        {Q_DECODER: -1, Q_ENCODER: 3, Q_PRIOR: -3, "KL(q(z)||p(z))": 2, "KL(p(z)||q(z))": 7},
        "Theorem 2, InfoVAE: (α+1), (λ1-α-1), λ2",
    ),
    (
        "mmd-vae",
        {"alpha": -1, "lambda": 500},
        "unary-likelihood-free",
        {Q_DECODER: -1, "MMD(q(z)||p(z))": 500},
        "Section 3.4",
    ),
    (
        "infovae",
        {"beta": 2, "lambda": 500},
        "unary-likelihood-free",
        {Q_DECODER: -1, Q_ENCODER: 2, Q_PRIOR: -2, "MMD(q(z)||p(z))": 500},
        "Section 4.2",
    ),
    (
        "aae",
        {},
        "unary-likelihood-free",
        {Q_DECODER: -1, "JS(q(z)||p(z))": 1},
        "Section 2.5 item 4",
    ),
    ("bigan", {}, "binary-likelihood-free", {"JS(q(x,z)||p(x,z))": 1}, "Section 2.5 item 5"),
    (
        "alice",
        {},
        "binary-likelihood-free",
        {Q_DECODER: -1, "JS(q(x,z)||p(x,z))": 1},
        "Section 2.5 item 5",
    ),
    (
        "cyclegan",
        {},
        "unary-likelihood-free",
        {Q_DECODER: -1, P_ENCODER: -1, "JS(q(x)||p(x))": 1, "JS(q(z)||p(z))": 1},
        "Section 2.5 item 6",
    ),
    (
        "avb",
        {},
        "likelihood-based",
        {Q_DECODER: -1, Q_ENCODER: 1, Q_PRIOR: -1},
        "KL(q(x,z)||p(x,z)) = negative ELBO",
    ),
    # Theorem 3 prints "-α E_p[log q(z|x)]"; the expansion gives +α (at α = -1 it must
    # reduce to InfoGAN's -E_p[log q(z|x)], Theorem 2), so the printed sign is a typo.
    (
        "kl-infobigan",
        {"alpha": 2, "lambda1": 5, "lambda2": 7},
        "binary-likelihood-free",
        {"KL(p(x,z)||q(x,z))": 3, "KL(p(x)||q(x))": 2, "KL(q(x)||p(x))": 7, P_ENCODER: 2},
        "Theorem 3: (α+1), (λ1-α-1), λ2",
    ),
]


def test_every_preset_has_a_paper_form_test() -> None:
    assert {name for name, *_ in PAPER_FORMS} == set(PRESETS)


@pytest.mark.parametrize(
    ("name", "params", "toolbox", "expected", "where"),
    PAPER_FORMS,
    ids=[f"{row[0]}: {row[4]}" for row in PAPER_FORMS],
)
def test_preset_compiles_to_the_paper_form(
    name: str, params: dict, toolbox: str, expected: dict, where: str
) -> None:
    compiled = compile_lagrangian(get_preset(name)(**params))
    assert compiled.toolbox == toolbox, where
    assert compiled.tractable_form == {k: F(v) for k, v in expected.items()}, where


def test_preset_parameters_are_checked() -> None:
    with pytest.raises(FamilyError, match="unknown parameter 'gamma'"):
        get_preset("beta-vae")(gamma=2)
    with pytest.raises(FamilyError, match="unknown preset"):
        get_preset("not-a-model")
    with pytest.raises(FamilyError, match="must be > 0"):  # β is a multiplier of KL(q(z)||p(z))
        compile_lagrangian(get_preset("beta-vae")(beta=0))


# --------------------------------------------------------------------------- property tests

positive = st.fractions(min_value=F(1, 100), max_value=100, max_denominator=1000)
real = st.fractions(min_value=-100, max_value=100, max_denominator=1000)


def _combine(*parts: Lagrangian) -> Lagrangian:
    lambdas: dict[str, Fraction] = {}
    for part in parts:
        for term, weight in part.lambdas.items():
            lambdas[term] = lambdas.get(term, F(0)) + weight
    return Lagrangian(
        sum((p.alpha1 for p in parts), F(0)), sum((p.alpha2 for p in parts), F(0)), lambdas
    )


def beta_elbo(l1: Fraction, l2: Fraction) -> Lagrangian:  # Eq. 20
    return Lagrangian(F(0), l2 - l1, {"KL(q(x|z)||p(x|z))": l1, "KL(q(z)||p(z))": l2})


def vmi(l1: Fraction) -> Lagrangian:  # Eq. 18
    return Lagrangian(-l1, F(0), {"KL(p(z|x)||q(z|x))": l1})


def infovae(alpha: Fraction, l1: Fraction, l2: Fraction) -> Lagrangian:  # Theorem 2
    return Lagrangian(
        F(0), alpha, {"KL(q(x|z)||p(x|z))": F(1), "KL(q(z)||p(z))": l1, "KL(p(z)||q(z))": l2}
    )


def infogan(l1: Fraction, l2: Fraction) -> Lagrangian:  # Theorem 2
    return Lagrangian(
        F(-1), F(0), {"KL(p(z|x)||q(z|x))": F(1), "KL(p(x)||q(x))": l1, "KL(q(x)||p(x))": l2}
    )


def infobigan(alpha: Fraction, l1: Fraction, l2: Fraction) -> Lagrangian:  # Theorem 3
    return Lagrangian(
        alpha, F(0), {"KL(p(z|x)||q(z|x))": F(1), "KL(p(x)||q(x))": l1, "KL(q(x)||p(x))": l2}
    )


@settings(max_examples=40, deadline=None)
@given(positive, positive, positive)
def test_theorem_1_members_are_likelihood_based(l1: Fraction, l2: Fraction, m: Fraction) -> None:
    compiled = compile_lagrangian(_combine(beta_elbo(l1, l2), vmi(m)))
    assert compiled.toolbox == "likelihood-based"


@settings(max_examples=40, deadline=None)
@given(real, positive, positive, positive, positive)
def test_theorem_2_members_are_unary_and_generic_ones_not_likelihood_based(
    alpha: Fraction, l1: Fraction, l2: Fraction, g1: Fraction, g2: Fraction
) -> None:
    compiled = compile_lagrangian(_combine(infovae(alpha, l1, l2), infogan(g1, g2)))
    assert compiled.toolbox == "unary-likelihood-free"  # λ2, g1, g2 > 0 keep it unary


@settings(max_examples=40, deadline=None)
@given(real, positive, positive, real, positive, positive)
def test_theorem_3_members_are_binary_and_generic_ones_not_unary(
    alpha: Fraction, l1: Fraction, l2: Fraction, a: Fraction, b1: Fraction, b2: Fraction
) -> None:
    member = _combine(infovae(alpha, l1, l2), infobigan(a, b1, b2))
    compiled = compile_lagrangian(member)
    if a + 1 != 0:  # the (α+1) KL(p(x,z)||q(x,z)) term is what needs T3
        assert compiled.toolbox == "binary-likelihood-free"
    else:
        assert compiled.toolbox == "unary-likelihood-free"


divergence_terms = [t for t in LAGRANGIAN_TERMS if t.startswith("KL")] + [
    "MMD(q(z)||p(z))",
    "JS(q(x)||p(x))",
    "JS(q(x,z)||p(x,z))",
    "MMD(q(z|x)||p(z|x))",
]


@settings(max_examples=100, deadline=None)
@given(
    real,
    real,
    st.dictionaries(st.sampled_from(divergence_terms), positive, max_size=6),
    st.sampled_from(["C1", "C2", "C3"]),
)
def test_every_tractable_form_is_equivalent_to_its_input(
    a1: Fraction, a2: Fraction, lambdas: dict[str, Fraction], constraint: str
) -> None:
    """tractable form + residual − Lagrangian lies in span(P), for random members."""
    required = {
        "C1": ["KL(q(x,z)||p(x,z))"],
        "C2": ["KL(q(x)||p(x))", "KL(p(z|x)||q(z|x))"],
        "C3": ["KL(q(z)||p(z))", "KL(q(x|z)||p(x|z))"],
    }[constraint]
    lambdas = {**{t: F(1) for t in required}, **lambdas}
    lagrangian_ = Lagrangian(a1, a2, lambdas)
    compiled = compile_lagrangian(lagrangian_)
    rebuilt = add(form_vector(compiled.tractable_form), compiled.residual)
    assert is_equivalent(rebuilt, lagrangian_.vector())
    assert (compiled.toolbox == "intractable") == bool(compiled.residual)
    assert (compiled.toolbox == "intractable") == ("MMD(q(z|x)||p(z|x))" in lambdas)


def test_every_kl_term_alone_is_binary_computable_so_only_non_kl_conditionals_block() -> None:
    """(T_blf + P) ∩ (R + P) has dimension 18 = dim(R + P): nothing KL is intractable."""
    from objectives.compile import reduce_to_tractable

    for term in LAGRANGIAN_TERMS:
        _, residual = reduce_to_tractable(term_vector(term))
        assert residual == {}, term
    r_plus_p = [term_vector(t) for t in LAGRANGIAN_TERMS] + elementary_transformations()
    assert rank(r_plus_p) == dict(dimension_table())["(T_blf + P) ∩ (R + P)"] == 18
