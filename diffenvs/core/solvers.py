r"""The gradient path's solvers: small objects, checked when built, and the torchdiffeq step they give.

:class:`RK4` is the faces' own fixed step (fast, works under ``torch.func``; ``compile=True`` runs
the horizon as compiled chunks, :mod:`diffenvs.core.fused`), :class:`Adaptive` torchdiffeq's
``odeint`` over each step and :class:`Adjoint` its ``odeint_adjoint``. Each step of the last two
is integrated on a rescaled clock :math:`s \in [0, 1]`, :math:`t = t_k + s h`
(:func:`odeint_integrator`), so a batch with per-trajectory step lengths (event location) shares
one solver call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq

from diffenvs.core.numerics import Components, Integrator, stack
from diffenvs.core.validation import check_integer

#: the method names ``torchdiffeq.odeint`` accepts (its documented solvers; a test checks the list
#: against ``odeint`` itself): the adaptive ``dopri8``, ``dopri5``, ``bosh3``, ``fehlberg2``,
#: ``adaptive_heun``; the fixed-grid ``euler``, ``midpoint``, ``heun2``, ``heun3``, ``rk4``,
#: ``explicit_adams``, ``implicit_adams``, ``fixed_adams``; and ``scipy_solver``
METHODS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint", "heun2", "heun3", "rk4",
           "explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver")


@dataclass(frozen=True)
class RK4:
    """Fixed-step classical Runge--Kutta, one stage set per environment step (the default).

    ``compile=True`` runs the horizon as compiled chunks of ``chunk`` steps
    (:mod:`diffenvs.core.fused`: traced with ``make_fx``, compiled by TorchInductor): forward, one
    call per chunk without an autograd graph; backward, one compiled vector-Jacobian product per
    chunk, in reverse, that recomputes the chunk from its saved start. Seconds to minutes to
    compile (longer chunks compile longer) on the first call for
    a given problem, policy and batch shape, then several times faster than eager at small
    batches (``scripts/bench_envs.py``). Gradients flow to the policy's parameters, ``x0`` and
    an open-loop tensor of controls; a rollout that asks for more (a callable policy that is
    not a ``torch.nn.Module``, tensor fields of ``params`` or ``noise`` that require grad) runs
    eagerly, and so does a problem whose internal state is not one number per trajectory and
    component (system identification carries matrices). Leave it off under ``torch.func``
    transforms and for one-off rollouts.

    The compiled code is kept on disk, one folder per machine and user
    (:mod:`diffenvs.core.compiler`): a later process that builds the same rollout (problem and its
    constants, policy structure, batch, dtype, device, chunk, torch version) loads it in seconds
    instead of compiling again. ``reuse_compiled=True`` (with ``compile=False``) runs the compiled
    chunks only where this rollout's compiled code is already there, and eagerly otherwise: it
    never compiles.
    """

    compile: bool = False
    chunk: int = 2
    """Steps per compiled chunk. 2 by default: on a quiet 2-core CPU (``python scripts/bench_compile.py --threads 1``,
    cartpole, batch 256, float32) chunks of 2, 5 and 10 steps compiled in 33, 57 and 119 s, a second process loaded
    them in 5.1, 6.4 and 11.0 s, and forward+backward took 24.7, 21.1 and 31.6 ms."""
    reuse_compiled: bool = False

    def __post_init__(self) -> None:
        for name in ("compile", "reuse_compiled"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_integer("chunk", self.chunk)


@dataclass(frozen=True)
class Adaptive:
    """torchdiffeq's ``odeint`` over each step; gradients by backpropagating through the solver.

    ``method`` is a torchdiffeq method name (``"dopri5"``, ``"bosh3"``, ``"rk4"``, ...),
    ``rtol``/``atol`` the relative and absolute error tolerances of adaptive methods.
    """

    method: str = "dopri5"
    rtol: float = 1e-7
    atol: float = 1e-9

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, finite, got {value!r}")


@dataclass(frozen=True)
class Adjoint(Adaptive):
    """torchdiffeq's ``odeint_adjoint``: gradients from the adjoint ODE solved backwards in time.

    The autograd graph keeps each step's start state, not the solver's stages or the
    policy's activations. With ``control="feedback"`` on a problem without events the whole
    horizon is one solve and the graph keeps only the solution on the step grid, about
    ``(steps + 1) x batch x n`` numbers (``n + 1`` with a running cost). The adjoint is not
    twice differentiable: do not put its gradients inside another loss.
    """


Solver = RK4 | Adaptive | Adjoint


def odeint_integrator(solver: Adaptive, leaves: list[torch.Tensor]) -> Integrator:
    """One step of torchdiffeq on the clock ``s in [0, 1]``.

    The held control and the step length ride in the ODE state with zero derivative, so
    the adjoint returns their gradients through its state; ``leaves`` (policy and physical
    parameters) are the adjoint's parameters.
    """
    adjoint = isinstance(solver, Adjoint)

    def integrate(f: Callable[[Any, Components, Any], Components], t: Any, z: Components, h: Any,
                  held: Components | None) -> Components:
        like = next(c for c in z if isinstance(c, torch.Tensor))
        n = len(z)
        extra = [] if held is None else list(held)
        packed = stack([*z, *extra, h], like=like)
        m = len(extra)

        def rhs(s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            columns = state.unbind(-1)
            step = columns[-1]
            control = None if held is None else columns[n:n + m]
            derivative = stack(f(t + s * step, columns[:n], control), like=state) * step.unsqueeze(-1)
            return torch.cat([derivative, torch.zeros_like(state[..., n:])], dim=-1)

        clock = torch.tensor([0.0, 1.0], dtype=packed.dtype, device=packed.device)
        options: dict[str, Any] = dict(rtol=solver.rtol, atol=solver.atol, method=solver.method)
        if adjoint:
            out = torchdiffeq.odeint_adjoint(rhs, packed, clock, adjoint_params=tuple(leaves), **options)
        else:
            out = torchdiffeq.odeint(rhs, packed, clock, **options)
        return tuple(out[-1].unbind(-1)[:n])

    return integrate
