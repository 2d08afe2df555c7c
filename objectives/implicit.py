"""Which densities a model provides, and what an implicit encoder changes (AVB).

Adversarial Variational Bayes (Mescheder et al. 2017) trains an encoder z = f(x, ε) that has
no density q(z|x). The tractable forms of the family (Definition 7) use q(z|x)'s density in
two terms: E_q[log q(z|x)] and E_p[log q(z|x)]. The first always comes paired with -E_q[log p(z)]
where it measures the rate, c E_q[log q(z|x)] = c E_x KL(q(z|x)||p(z)) + c E_q[log p(z)], and
E_x KL(q(z|x)||p(z)) is what AVB's adversary T(x, z) learns: a classifier between
(x, z ~ q(z|x)) and (x, z ~ p(z)) whose optimal logit is log q(z|x) - log p(z) (Prop. 1), and
whose gradient in the encoder is E_q[∇ T] at the optimum (Prop. 2; the density-ratio KL of
`objectives.divergences`). E_q[log p(z)] is then a Monte Carlo average over the samples.
E_p[log q(z|x)] needs the density at a generated x and has no such rewrite: refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from objectives.terms import FamilyError

ADVERSARY_TERM = "KL(q(z|x)||p(z))"  # E_x KL(q(z|x)||p(z)) by an adversary T(x, z)


def implicit_encoder_form(tractable_form: Mapping[str, float]) -> dict[str, float]:
    """The tractable form (registry spelling) rewritten for an encoder without a density, or
    FamilyError naming the term that needs the density."""
    form = {term: float(c) for term, c in tractable_form.items()}
    if form.pop("E_p[log q(z|x)]", 0.0) != 0.0:
        raise FamilyError(
            "E_p[log q(z|x)] needs the density q(z|x) at generated x, which an implicit "
            "encoder does not provide; use model.encoder: gaussian"
        )
    c = form.pop("E_q[log q(z|x)]", 0.0)
    if c != 0.0:  # c E_q[log q(z|x)] = c E_x KL(q(z|x)||p(z)) + c E_q[log p(z)]
        form["E_q[log p(z)]"] = form.get("E_q[log p(z)]", 0.0) + c
        form[ADVERSARY_TERM] = c
    return {term: c for term, c in form.items() if c != 0.0}
