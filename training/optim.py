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

Members in lockstep (all step, at one count and one rate: a fixed population) need no views
either, where they change nothing: a parameter whose per-member size is a multiple of ALIGN
goes to the kernel whole, one tensor instead of K. The kernel runs vectors from each tensor's
start and a scalar loop over its tail, and the two may round differently; at such a size every
member's slice starts on a vector boundary of the whole tensor and has no tail, so each element
takes the path it takes in the member's own view, and the update is bit for bit the same.
Narrower ones (a bias of two) keep their views. This cuts the kernel's tensor count, and its
per-tensor work, by about K at once (docs/BENCHMARKS.md, "The population step").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

ALIGN = 16  # floats in a 64-byte cache line: a multiple of every CPU vector width (AVX-512: 16)


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
        self.counts = [0] * self.members  # self.steps as ints: is a step taken in lockstep?
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
        for k in chosen:
            self.counts[k] += 1
        if not self.whole and self._lockstep(chosen):
            self._fused(None, self.lrs[0])
            return
        rates: dict[float, list[int]] = {}
        for k in chosen:  # one kernel call per learning rate (almost always one)
            rates.setdefault(self.lrs[k], []).append(k)
        for lr, group in rates.items():
            self._fused(tuple(group), lr)

    @property
    def lr(self) -> float:
        """The rate when every member has the same (a plain run's)."""
        return self.lrs[0]

    def _lockstep(self, chosen: tuple[int, ...]) -> bool:
        """Every member steps, at one count and one rate."""
        return (
            len(chosen) == self.members and len(set(self.counts)) == 1 and len(set(self.lrs)) == 1
        )

    def _fused(self, chosen: tuple[int, ...] | None, lr: float) -> None:
        """One kernel call for `chosen` (None: every member, in lockstep)."""
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

    def _lists(self, chosen: tuple[int, ...] | None) -> tuple[list[Tensor], ...]:
        """The kernel's tensor lists for these members: views, made once per set of members
        (a population of one: its whole tensors, with this step's gradients; None: members in
        lockstep, aligned parameters whole and the others' views)."""
        if self.whole:
            if chosen not in self._views:
                steps = [self.steps[0]] * len(self.params)
                detached = [p.detach() for p in self.params]
                self._views[chosen] = (detached, [], self.exp_avg, self.exp_avg_sq, steps)
            params, _, exp_avg, exp_avg_sq, steps = self._views[chosen]
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
            return params, grads, exp_avg, exp_avg_sq, steps
        if chosen not in self._views:
            self._views[chosen] = self._make_views(chosen)
        return self._views[chosen]

    def _make_views(self, chosen: tuple[int, ...] | None) -> tuple[list[Tensor], ...]:
        members = range(self.members) if chosen is None else chosen
        whole = (
            []
            if chosen is not None
            else [  # lockstep: each with member 0's count
                i for i, p in enumerate(self.params) if (p.numel() // self.members) % ALIGN == 0
            ]
        )
        parts = [(i, None) for i in whole]
        parts += [(i, k) for k in members for i in range(len(self.params)) if i not in whole]

        def part(t: Tensor, k: int | None) -> Tensor:
            return t if k is None else t[k]

        return (
            [part(self.params[i].detach(), k) for i, k in parts],
            [part(self.params[i].grad, k) for i, k in parts],  # type: ignore[arg-type]
            [part(self.exp_avg[i], k) for i, k in parts],
            [part(self.exp_avg_sq[i], k) for i, k in parts],
            [self.steps[0 if k is None else k] for _, k in parts],
        )

    def reset(self, k: int) -> None:
        """Member k starts afresh: zero moments, step 0."""
        with torch.no_grad():
            for m, v in zip(self.exp_avg, self.exp_avg_sq, strict=True):
                m[k].zero_()
                v[k].zero_()
            self.steps[k].zero_()
        self.counts[k] = 0

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
        self.counts = [int(s) for s in state["steps"].tolist()]
        self.lrs = list(state["lrs"])
