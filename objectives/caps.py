"""The information estimate that `objective.mi_upper_bound` caps (paper Section 4.1, Figure
1's dashed lines), chosen by `objective.mi_upper_bound_on`, one value per member (K,).

- `rate`: R = E_x KL(q(z|x)||p(z)) in closed form, an upper bound on I_q(x;z)
  (= I_q + KL(q(z)||p(z))). Past the cap the reward no longer moves E_q[log q(z|x)].
- `distortion`: Appendix C.1 estimates I_q from the reconstruction term and caps that:
  I_q(x;z) >= H(x) - D with D = -E_q[log p(x|z)] (Barber & Agakov 2003; equality when
  p(x|z) = q(x|z)), the `mi_ba` metric. The appendix prints the identity as
  "-E_q[log p(x|z)] = I_q - KL(q(x|z)||p(x|z))"; the exact form is
  E_q[log p(x|z)] + H(x) = I_q - KL(q(x|z)||p(x|z)), which needs the data entropy H(x):
  known for the mixture of Section 4.1 only, so the experiment file refuses it elsewhere.
  Past the cap the β-VAE's loss D + β R gains (1 - β)(H - D - C): it is β (D + R), the ELBO
  scaled, whose gradient reaches the decoder too (the rate cap's reaches the encoder only).
"""

from __future__ import annotations

from torch import Tensor

from objectives.record import ForwardRecord, eq_log_likelihood, gaussian_kl

CAPPED_ESTIMATES = ("rate", "distortion")


def capped_information(record: ForwardRecord, on: str, data_entropy: float | None) -> Tensor:
    """The members' batch estimate of I_q that the cap compares with C, (K,)."""
    if on == "distortion":
        assert data_entropy is not None, "a cap on H(x) - distortion needs the data entropy"
        return data_entropy + eq_log_likelihood(record)
    return gaussian_kl(record.posterior.mean, record.posterior.logvar).mean(-1)
