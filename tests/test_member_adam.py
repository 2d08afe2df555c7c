"""MemberAdam against torch's own fused Adam, member by member (training/optim.py).

The same kernel (`torch._fused_adam_`) on the same elements in the same order: each member of
a MemberAdam must move bit for bit as a `torch.optim.Adam(fused=True)` over that member's
tensors alone would, whichever members step, whenever a member starts, whatever its rate.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from training.optim import ALIGN, MemberAdam

SHAPES = [(3, 4), (1, 4), (4,)]  # a weight, a (1, out) bias, a vector: per member
# members in lockstep take aligned parameters whole (ALIGN floats apart) and the rest as views
ALIGNED = [(4, ALIGN), (1, 3 * ALIGN), (2, 1), (ALIGN + 3,)]


def stacked(k: int, seed: int = 0, shapes: list[tuple[int, ...]] = SHAPES) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn((k, *shape), generator=g)) for shape in shapes]


def member_copy(params: list[nn.Parameter], k: int) -> list[nn.Parameter]:
    return [nn.Parameter(p.detach()[k].clone()) for p in params]


def gradient(step: int, k: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * step + 10 * k + len(shape))
    return torch.randn(shape, generator=g)


def set_grads(
    params: list[nn.Parameter], step: int, members: list[int], shapes: list[Any] = SHAPES
) -> None:
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for k in members:
        for p, shape in zip(params, shapes, strict=True):
            p.grad[k] = gradient(step, k, shape)  # type: ignore[index]


@pytest.mark.parametrize(
    ("k", "shapes", "tensors"),
    [(1, SHAPES, 3), (3, SHAPES, 9), (5, ALIGNED, 2 + 5 * 2)],
    ids=["one-whole", "views", "lockstep-aligned-whole"],
)
def test_each_member_moves_as_its_own_fused_adam_bit_for_bit(
    k: int, shapes: list[Any], tensors: int
) -> None:
    """All members step every time: K = 1 takes the whole-tensor path, K = 3 with unaligned
    sizes one view per member and parameter, K = 5 in lockstep the aligned parameters whole
    (`tensors`: what the kernel is handed). Each is bit for bit its own Adam."""
    params = stacked(k, shapes=shapes)
    ours = MemberAdam(params, lr=1e-2)
    alone = [member_copy(params, m) for m in range(k)]
    theirs = [torch.optim.Adam(a, lr=1e-2, fused=True) for a in alone]
    for step in range(6):
        ours.zero_grad()
        set_grads(params, step, list(range(k)), shapes)
        ours.step()
        for m in range(k):
            theirs[m].zero_grad()
            for p, shape in zip(alone[m], shapes, strict=True):
                p.grad = gradient(step, m, shape)
            theirs[m].step()
    for m in range(k):
        for p, q in zip(params, alone[m], strict=True):
            assert torch.equal(p.detach()[m], q.detach())
    assert ours._lockstep(tuple(range(k)))
    assert len(ours._lists(None)[0]) == tensors


def test_a_late_member_a_skipped_member_and_its_own_rate_are_its_own() -> None:
    """Member 1 restarts at step 3 (`reset`: a refilled slot), member 2 sits out steps 1-2 and
    has half the rate: each still matches a fresh torch Adam fed only its own steps."""
    params = stacked(3)
    ours = MemberAdam(params, lr=1e-2)
    ours.lrs = [1e-2, 1e-2, 5e-3]
    alone = {m: member_copy(params, m) for m in range(3)}
    theirs = {m: torch.optim.Adam(alone[m], lr=ours.lrs[m], fused=True) for m in range(3)}
    for step in range(7):
        if step == 3:  # member 1 is a new member from here: fresh state, its current weights
            ours.reset(1)
            alone[1] = member_copy(params, 1)
            theirs[1] = torch.optim.Adam(alone[1], lr=1e-2, fused=True)
        members = [0, 1] if step in (1, 2) else [0, 1, 2]
        ours.zero_grad()
        set_grads(params, step, members)
        ours.step(members)
        for m in members:
            theirs[m].zero_grad()
            for p, shape in zip(alone[m], SHAPES, strict=True):
                p.grad = gradient(step, m, shape)
            theirs[m].step()
    assert [int(s) for s in ours.steps] == [7, 4, 5]
    for m in range(3):
        for p, q in zip(params, alone[m], strict=True):
            assert torch.equal(p.detach()[m], q.detach()), f"member {m}"


def test_a_population_of_one_sets_gradients_to_none_and_survives_a_missing_one() -> None:
    """K = 1 lets backward write fresh gradients (zero_grad sets None); a parameter backward
    did not reach steps as with a zero gradient, as torch's Adam over zeros would."""
    params = stacked(1)
    ours = MemberAdam(params, lr=1e-2)
    ours.zero_grad()
    assert all(p.grad is None for p in params)
    (params[0] * 2.0).sum().backward()  # only the first parameter gets a gradient
    before = [p.detach().clone() for p in params]
    ours.step()
    assert not torch.equal(params[0].detach(), before[0])
    assert torch.equal(params[1].detach(), before[1])  # zero gradient, zero moments: no move
    assert int(ours.steps[0]) == 1
