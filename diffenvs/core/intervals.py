r"""An ODE solution on a rescaled clock per output interval, differentiable in everything, the output times included.

Each interval :math:`[t_k, t_{k+1}]` is integrated on the clock :math:`s \in [0, 1]`,
:math:`t = t_k + s h_k`, so the times are ordinary inputs of the arithmetic.
:func:`diffenvs.derivatives.solve` (the public name) and the sensitivities there are built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torchdiffeq

from diffenvs.core.numerics import Components, rk4_step
from diffenvs.core.solvers import RK4, Adaptive, Adjoint, Solver
from diffenvs.core.validation import check_integer

_DEFAULT_SOLVER = RK4()

VectorField = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``f(t, x, theta) -> dx/dt``: ``t`` of shape ``(batch,)``, ``x`` of shape ``(batch, n)``, row-wise."""


def check_ode_inputs(x0: Any, times: Any, steps: int, solver: Any) -> torch.Tensor:
    if not isinstance(solver, (RK4, Adaptive)):
        raise TypeError(f"solver must be RK4(), Adaptive(...) or Adjoint(...), got {solver!r}")
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating-point tensor of shape (batch, n), got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    if not isinstance(times, torch.Tensor) or times.dim() not in (1, 2) or times.shape[0] < 2:
        raise ValueError(f"times must be a tensor of shape (K,) or (K, batch) with K >= 2, got "
                         f"{tuple(times.shape) if isinstance(times, torch.Tensor) else type(times).__name__}")
    if times.dim() == 2 and times.shape[1] != x0.shape[0]:
        raise ValueError(f"times of shape (K, batch) must match x0's batch {x0.shape[0]}, got {tuple(times.shape)}")
    check_integer("steps", steps)
    return times.to(x0.dtype).reshape(times.shape[0], -1).expand(-1, x0.shape[0])


def _tensors(theta: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(theta, torch.Tensor):
        return (theta,)
    if isinstance(theta, (tuple, list)):
        return tuple(v for v in theta if isinstance(v, torch.Tensor))
    if isinstance(theta, Mapping):
        return tuple(v for v in theta.values() if isinstance(v, torch.Tensor))
    return ()


def solve(
    f: VectorField,
    x0: torch.Tensor,
    times: torch.Tensor,
    theta: Any = None,
    *,
    solver: Solver = _DEFAULT_SOLVER,
    steps: int = 10,
) -> torch.Tensor:
    r"""Solution :math:`x(t_k)` of :math:`\dot x = f(t, x, \theta)`, :math:`x(t_0) = x_0`, differentiable in everything.

    Each interval :math:`[t_k, t_{k+1}]` is integrated on the clock :math:`s \in [0, 1]`,
    :math:`t = t_k + s h_k`, :math:`dx/ds = h_k f(t, x, \theta)`, so the times are ordinary
    inputs of the arithmetic: the discrete solution is differentiable in :math:`t_k` (an
    adaptive solver's step choice is not differentiated), and each batch element may have its
    own times.

    Args:
        f: the vector field ``f(t, x, theta)`` with ``t`` ``(batch,)``, ``x`` ``(batch, n)``,
            acting row by row.
        x0: start states, shape ``(batch, n)``.
        times: output times, shape ``(K,)`` (shared) or ``(K, batch)``; ``times[0]`` is the
            time of ``x0``; decreasing times integrate backwards.
        theta: passed to ``f`` unchanged (a tensor, a tuple or dict of tensors, or ``None``);
            its tensors are the :class:`Adjoint` solver's parameters.
        solver: :class:`RK4` (``steps`` classical Runge--Kutta steps per interval),
            :class:`Adaptive` or :class:`Adjoint` (torchdiffeq ``odeint`` / ``odeint_adjoint``
            per interval; ``steps`` unused).
        steps: RK4 steps per interval.

    Returns:
        :math:`x(t_k)`, shape ``(K, batch, n)``, with ``[0]`` equal to ``x0``.
    """
    grid = check_ode_inputs(x0, times, steps, solver)
    leaves = _adjoint_leaves(f, theta) if isinstance(solver, Adjoint) else ()
    states, x = [x0], x0
    for k in range(grid.shape[0] - 1):
        start, h = grid[k], grid[k + 1] - grid[k]
        if isinstance(solver, RK4):
            x = _rk4_interval(f, x, start, h, theta, steps)
        else:
            x = _odeint_interval(f, x, start, h, theta, solver, leaves)
        states.append(x)
    return torch.stack(states)


def _adjoint_leaves(f: VectorField, theta: Any) -> tuple[torch.Tensor, ...]:
    """The adjoint's parameters: the tensors of ``theta`` and of a module ``f`` that require grad (leaves only)."""
    leaves = tuple(p for p in _tensors(theta) if p.requires_grad)
    if isinstance(f, torch.nn.Module):
        leaves = leaves + tuple(p for p in f.parameters() if p.requires_grad)
    if any(not p.is_leaf for p in leaves):
        raise ValueError("with the Adjoint solver, the tensors of theta must be leaf tensors (they are the "
                         "adjoint's parameters); build theta with requires_grad_() on a leaf")
    return leaves


def _rk4_interval(f: VectorField, x: torch.Tensor, start: torch.Tensor, h: torch.Tensor, theta: Any,
                  steps: int) -> torch.Tensor:
    """``x`` advanced over the interval ``[start, start + h]`` by ``steps`` RK4 steps on the clock ``s in [0, 1]``."""

    def field(s: Any, z: Components, _: Any) -> Components:
        return tuple((f(start + s * h, torch.stack(z, -1), theta) * h.unsqueeze(-1)).unbind(-1))

    z: Components = tuple(x.unbind(-1))
    for i in range(steps):
        z = rk4_step(field, i / steps, z, 1.0 / steps, None)
    return torch.stack(z, -1)


def _odeint_interval(f: VectorField, x: torch.Tensor, start: torch.Tensor, h: torch.Tensor, theta: Any,
                     solver: Adaptive, leaves: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``x`` advanced over the interval ``[start, start + h]`` by torchdiffeq on the clock ``s in [0, 1]``."""
    n = x.shape[-1]
    packed = torch.cat([x, start.unsqueeze(-1), h.unsqueeze(-1)], dim=-1)

    def rhs(s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        begin, length = state[..., n], state[..., n + 1]
        derivative = f(begin + s * length, state[..., :n], theta) * length.unsqueeze(-1)
        return torch.cat([derivative, torch.zeros_like(state[..., n:])], dim=-1)

    clock = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
    options: dict[str, Any] = dict(rtol=solver.rtol, atol=solver.atol, method=solver.method)
    if isinstance(solver, Adjoint):
        out = torchdiffeq.odeint_adjoint(rhs, packed, clock, adjoint_params=leaves, **options)
    else:
        out = torchdiffeq.odeint(rhs, packed, clock, **options)
    result: torch.Tensor = out[-1][..., :n]
    return result
