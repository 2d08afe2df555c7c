"""Adam with one state per member: the optimiser of the stacked model; no Ray here.

Every parameter of the stacked model has a leading member axis (K, ...), and Adam acts per
element, so one Adam over the stacked tensors moves each member as its own Adam would, except
for one number: the step count of the bias correction, which `torch.optim.Adam` keeps per
tensor. A member that starts later than its neighbours (a refilled slot of a rolling population,
`search.rolling`) needs its own count, or its first updates are up to 1/sqrt(1 - β2) times too
large. So each member's slice of every parameter goes to torch's fused Adam kernel (the kernel
`torch.optim.Adam(fused=True)` calls) as a tensor of its own: a view, the same storage, with
that member's step. `reset(k)` gives slot k fresh moments and step 0; a member left out of a
step (diverged, or a slot waiting for its first point) neither moves nor counts the step.

With K > 1 the gradients stay allocated (zeroed in place, never set to None) so that the
per-member views of them, made once, stay valid; backward accumulates into them in place. A
population of one needs no views: its tensors go to the kernel whole, and its gradients are set
to None between steps as `torch.optim` does, so that backward writes them fresh instead of
adding into zeroed buffers (two passes over every parameter's size, which show at 2 × 1024).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


class MemberAdam:
    """Adam (Kingma & Ba 2015, torch's defaults: no weight decay, no amsgrad) over stacked
    (K, ...) parameters with a step count per member."""

    def __init__(
        self,
        params: Sequence[nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.members = len(self.params[0])
        assert all(len(p) == self.members for p in self.params), "one member axis for all"
        self.betas, self.eps = betas, eps
        self.lrs = [lr] * self.members  # each member's rate (a schedule sets them per step)
        self.whole = self.members == 1  # whole tensors to the kernel, gradients set to None
        if not self.whole:
            for p in self.params:
                p.grad = torch.zeros_like(p)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        device = self.params[0].device
        self.steps = [torch.zeros((), device=device) for _ in range(self.members)]
        self._views: dict[tuple[int, ...], tuple[list[Tensor], ...]] = {}

    def zero_grad(self) -> None:
        if self.whole:
            for p in self.params:
                p.grad = None
        else:
            torch._foreach_zero_([p.grad for p in self.params])

    def step(self, members: Sequence[int] | None = None) -> None:
        """One Adam update of `members` (default: all), each with its own bias correction."""
        chosen = tuple(range(self.members)) if members is None else tuple(members)
        if not chosen:
            return
        torch._foreach_add_([self.steps[k] for k in chosen], 1.0)
        rates: dict[float, list[int]] = {}
        for k in chosen:  # one kernel call per learning rate (almost always one)
            rates.setdefault(self.lrs[k], []).append(k)
        for lr, group in rates.items():
            self._fused(tuple(group), lr)

    @property
    def lr(self) -> float:
        """The rate when every member has the same (a plain run's)."""
        return self.lrs[0]

    def _fused(self, chosen: tuple[int, ...], lr: float) -> None:
        params, grads, exp_avg, exp_avg_sq, steps = self._lists(chosen)
        torch._fused_adam_(
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            [],
            steps,
            lr=lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def _lists(self, chosen: tuple[int, ...]) -> tuple[list[Tensor], ...]:
        """The kernel's tensor lists for these members: views, made once per set of members
        (a population of one: its whole tensors, with this step's gradients)."""
        if self.whole:
            if chosen not in self._views:
                steps = [self.steps[0]] * len(self.params)
                detached = [p.detach() for p in self.params]
                self._views[chosen] = (detached, [], self.exp_avg, self.exp_avg_sq, steps)
            params, _, exp_avg, exp_avg_sq, steps = self._views[chosen]
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
            return params, grads, exp_avg, exp_avg_sq, steps
        if chosen not in self._views:
            pairs = [(i, k) for k in chosen for i in range(len(self.params))]
            self._views[chosen] = (
                [self.params[i].detach()[k] for i, k in pairs],
                [self.params[i].grad[k] for i, k in pairs],  # type: ignore[index]
                [self.exp_avg[i][k] for i, k in pairs],
                [self.exp_avg_sq[i][k] for i, k in pairs],
                [self.steps[k] for _, k in pairs],
            )
        return self._views[chosen]

    def reset(self, k: int) -> None:
        """Member k starts afresh: zero moments, step 0."""
        with torch.no_grad():
            for m, v in zip(self.exp_avg, self.exp_avg_sq, strict=True):
                m[k].zero_()
                v[k].zero_()
            self.steps[k].zero_()

    def state_dict(self) -> dict[str, Any]:
        return {
            "exp_avg": [t.clone() for t in self.exp_avg],
            "exp_avg_sq": [t.clone() for t in self.exp_avg_sq],
            "steps": torch.stack(self.steps).cpu(),
            "lrs": list(self.lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for mine, saved in zip(self.exp_avg, state["exp_avg"], strict=True):
                mine.copy_(saved)
            for mine, saved in zip(self.exp_avg_sq, state["exp_avg_sq"], strict=True):
                mine.copy_(saved)
            for mine, saved in zip(self.steps, state["steps"], strict=True):
                mine.copy_(saved)
        self.lrs = list(state["lrs"])
