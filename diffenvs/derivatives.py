r"""Derivatives that are themselves differentiated: quantities inside a loss trained by reverse mode.

A physics regulariser :math:`\sum_i \|\partial U/\partial x\,(x_i)\|^2` on a network
:math:`U`, the sensitivity :math:`g(t) = \partial x(t)/\partial\theta` of an ODE solution
that an experimental design maximises over :math:`t`, the residual
:math:`\ddot q - F(q)` of a network :math:`q(t)`: each is a derivative, and training or
optimising it needs the derivative of that derivative. Every function here returns a tensor
that stays on the autograd graph, so ``loss.backward()`` differentiates through it:

* :func:`input_jacobian`: the batched input Jacobian :math:`J_i = \partial U/\partial x\,(x_i)`
  of a module, forward mode per point under ``torch.func.vmap`` (one ``jvp`` per input
  dimension, no Python loop over points), with ``torch.func.functional_call`` so the
  gradient of a loss of :math:`J` reaches the module's parameters (forward-over-reverse).
* :func:`solve` and :func:`sensitivity`: an ODE solution :math:`x(t_k)` on a rescaled clock
  (so it is differentiable in the times :math:`t_k` too, which solvers otherwise are not)
  and its sensitivity :math:`S_k = \partial x(t_k)/\partial\theta` by reverse mode with
  ``create_graph``, differentiable again in :math:`t_k`, :math:`\theta` and :math:`x_0`.
* :func:`sensitivity_schwarz`: the same :math:`S(t)` whose derivative in :math:`t` is
  :math:`\dot S = \tfrac{d}{d\theta} f(t, x(t; \theta), \theta)` (Schwarz: the mixed partials
  commute), so only *first* derivatives through the solver are ever taken.
* :func:`time_derivatives`: :math:`q, \dot q, \ddot q, \dots, q^{(k)}` of a network of time by
  nested forward-mode ``jvp``.

Where a path cannot give a second derivative the functions refuse it: torchdiffeq's
``odeint_adjoint`` (:class:`~diffenvs.core.solvers.Adjoint`) computes its backward pass
under ``torch.no_grad``, so a gradient taken through it is a constant to autograd and a
loss containing it silently loses that term's gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.func import functional_call, jacfwd, jacrev, jvp, vmap

from diffenvs.core.intervals import VectorField, check_ode_inputs, solve
from diffenvs.core.solvers import RK4, Adjoint, Solver
from diffenvs.core.validation import check_choice, check_integer

__all__ = ["input_jacobian", "solve", "sensitivity", "sensitivity_schwarz", "time_derivatives", "module_parameters"]

_DEFAULT_SOLVER = RK4()



_ADJOINT_REFUSAL = (
    "the Adjoint solver cannot give a derivative that is differentiated again: torchdiffeq's "
    "odeint_adjoint runs its backward pass under torch.no_grad, so the result would be a constant "
    "to autograd and a loss containing it would silently lose that term's gradient. Use RK4() or "
    "Adaptive(...) (backpropagation through the solver), or create_graph=False if no second "
    "derivative is needed"
)


def module_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters and buffers by name: the default ``params`` of the functions below."""
    return {**dict(module.named_buffers()), **dict(module.named_parameters())}


def input_jacobian(
    module: torch.nn.Module,
    x: torch.Tensor,
    *,
    params: Mapping[str, torch.Tensor] | None = None,
    mode: str = "forward",
) -> torch.Tensor:
    r"""Batched input Jacobian :math:`J_{b,i,j} = \partial U_i/\partial x_j\,(x_b)` of a network, differentiable.

    Args:
        module: the network :math:`U`, mapping ``(batch, n_in)`` to ``(batch, n_out)`` row by
            row (no mixing across the batch, e.g. no batch norm in training mode).
        x: the points :math:`x_b`, shape ``(batch, n_in)``.
        params: tensors to use for the module's parameters (``torch.func.functional_call``);
            default the module's own, so ``loss(J).backward()`` fills ``module`` ``.grad``.
        mode: ``"forward"``: ``vmap(jacfwd)``, one forward-mode ``jvp`` per input dimension;
            the gradient of a loss of :math:`J` is then forward-over-reverse, the cheap order
            when inputs are few. ``"reverse"``: ``vmap(jacrev)``, one ``vjp`` per output,
            reverse-over-reverse.

    Returns:
        :math:`J`, shape ``(batch, n_out, n_in)``, on the autograd graph of ``x`` and ``params``.
    """
    check_choice("mode", mode, ("forward", "reverse"))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a tensor of shape (batch, n_in), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    params = module_parameters(module) if params is None else dict(params)

    def single(point: torch.Tensor) -> torch.Tensor:
        return functional_call(module, params, (point.unsqueeze(0),)).squeeze(0)

    jacobian = jacfwd(single) if mode == "forward" else jacrev(single)
    return vmap(jacobian)(x)


def time_derivatives(
    function: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    t: torch.Tensor,
    order: int,
    *,
    params: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    r"""All time derivatives :math:`q, \dot q, \dots, q^{(k)}` of a network of time, differentiable.

    :math:`q^{(j)}(t_b) = \tfrac{d^j}{dt^j} q(t_b)` by ``order`` nested forward-mode
    ``torch.func.jvp`` with tangent 1 in :math:`t`: each level carries the value and its
    derivative, so one call returns every order up to :math:`k` (the cost grows as
    :math:`2^k` evaluations of the network: meant for the small :math:`k` of a residual).

    Args:
        function: a module mapping times ``(batch, 1)`` to ``(batch, n_out)``, or a callable
            mapping ``(batch,)`` to ``(batch,)`` or ``(batch, n_out)``; row by row.
        t: times, shape ``(batch,)``.
        order: the highest derivative :math:`k \ge 0`.
        params: for a module, tensors to use for its parameters (default its own).

    Returns:
        shape ``(k + 1, batch, n_out)`` (or ``(k + 1, batch)``), on the graph of ``t`` and the parameters.
    """
    check_integer("order", order, least=0)
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        raise ValueError(f"t must be a tensor of shape (batch,), got "
                         f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if isinstance(function, torch.nn.Module):
        module, weights = function, module_parameters(function) if params is None else dict(params)

        def base(s: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (functional_call(module, weights, (s.unsqueeze(-1),)),)
    elif callable(function):
        if params is not None:
            raise ValueError("params is only for a module; a callable closes over its own tensors")

        def base(s: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (function(s),)
    else:
        raise TypeError(f"function must be a torch.nn.Module or callable, got {type(function).__name__}")

    def raise_order(lower: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]) -> Callable:
        def higher(s: torch.Tensor) -> tuple[torch.Tensor, ...]:
            result = jvp(lower, (s,), (torch.ones_like(s),))
            values, tangents = result[0], result[1]
            return (*values, tangents[-1])  # the tangents of lower orders repeat the values' tail
        return higher

    derivatives = base
    for _ in range(order):
        derivatives = raise_order(derivatives)
    return torch.stack(derivatives(t))


# ---- ODE solutions on a rescaled clock ---------------------------------------------------
def _theta_rows(theta: Any, batch: int, fresh: bool) -> torch.Tensor:
    """``theta`` as one row per batch element ``(batch, m)``: a row's sensitivity is then its own gradient."""
    if not isinstance(theta, torch.Tensor) or theta.dim() not in (1, 2) or not theta.is_floating_point():
        raise ValueError(f"theta must be a floating-point tensor of shape (m,) or (batch, m), got "
                         f"{tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__}")
    if theta.dim() == 2 and theta.shape[0] != batch:
        raise ValueError(f"theta of shape (batch, m) must match x0's batch {batch}, got {tuple(theta.shape)}")
    rows = theta.expand(batch, -1)
    if fresh or not rows.requires_grad:  # a new leaf: gradients stop here
        rows = rows.detach().clone().requires_grad_(True)
    return rows


def sensitivity(
    f: VectorField,
    x0: torch.Tensor,
    times: torch.Tensor,
    theta: torch.Tensor,
    *,
    solver: Solver = _DEFAULT_SOLVER,
    steps: int = 10,
    create_graph: bool = True,
) -> torch.Tensor:
    r"""Sensitivity :math:`S_k = \partial x(t_k)/\partial\theta` of an ODE solution, differentiable again.

    :math:`x(t)` solves :math:`\dot x = f(t, x, \theta)` from the fixed :math:`x(t_0) = x_0`
    (:func:`solve`); :math:`S` is the derivative of the solver's output, by reverse mode
    through the solver (one backward pass per output time and state component). With
    ``create_graph`` (default) :math:`S` is itself on the autograd graph: a loss of
    :math:`S` can be differentiated in :math:`t_k` (e.g. an experimental design),
    :math:`\theta` and :math:`x_0`. It satisfies the sensitivity equation
    :math:`\dot S = \partial_x f\, S + \partial_\theta f`, :math:`S(t_0) = 0`.

    Args:
        f: the vector field; it receives ``theta`` with one row per batch element,
            shape ``(batch, m)`` (write it with ``theta[..., j]``).
        x0: start states ``(batch, n)``.
        times: output times ``(K,)`` or ``(K, batch)``, ``times[0]`` the start.
        theta: parameters ``(m,)`` (shared) or ``(batch, m)``.
        solver: :class:`RK4` or :class:`Adaptive`; :class:`Adjoint` only with
            ``create_graph=False`` (it is not twice differentiable: refused with ``ValueError``).
        steps: RK4 steps per interval.
        create_graph: keep :math:`S` differentiable (``False``: a constant, cheaper).

    Returns:
        :math:`S`, shape ``(K, batch, n, m)``, ``S[0] = 0``.
    """
    if create_graph and isinstance(solver, Adjoint):
        raise ValueError(f"sensitivity(..., create_graph=True): {_ADJOINT_REFUSAL}")
    if not (isinstance(x0, torch.Tensor) and x0.dim() == 2):
        check_ode_inputs(x0, times, steps, solver)  # raises the shape error
    batch = int(x0.shape[0])
    with torch.enable_grad():
        rows = _theta_rows(theta, batch, fresh=isinstance(solver, Adjoint) or not create_graph)
        x = solve(f, x0, times, rows, solver=solver, steps=steps)
        K, n = x.shape[0], x.shape[-1]
        blocks = []
        for k in range(1, K):
            for i in range(n):
                (grad,) = torch.autograd.grad(x[k, :, i].sum(), rows, retain_graph=True, create_graph=create_graph,
                                              allow_unused=True, materialize_grads=True)
                blocks.append(grad)
    rest = torch.stack(blocks).reshape(K - 1, n, batch, -1).transpose(1, 2)
    return torch.cat([torch.zeros_like(rest[:1]), rest])


class _SchwarzSensitivity(torch.autograd.Function):
    """S(t) forward by a first-order derivative through the solver; dS/dt = d/dθ f(t, x(t; θ), θ) backward."""

    @staticmethod
    def forward(ctx, t, x0, theta, f, solver, steps, t0):  # noqa: D102
        ctx.save_for_backward(t, x0, theta)
        ctx.f, ctx.solver, ctx.steps, ctx.t0 = f, solver, steps, t0
        times = torch.stack([torch.full_like(t, t0), t])
        return sensitivity(f, x0, times, theta, solver=solver, steps=steps, create_graph=False)[-1]

    @staticmethod
    def backward(ctx, grad_s):  # noqa: D102
        t, x0, theta = ctx.saved_tensors
        higher = torch.is_grad_enabled()  # the caller asked for create_graph: a third derivative may follow
        if higher and isinstance(ctx.solver, Adjoint):
            raise ValueError(f"sensitivity_schwarz differentiated twice: {_ADJOINT_REFUSAL}")
        with torch.enable_grad():
            rows = _theta_rows(theta, t.shape[0], fresh=True)
            end = t if higher else t.detach().requires_grad_(False)
            x = solve(ctx.f, x0, torch.stack([torch.full_like(end, ctx.t0), end]), rows,
                      solver=ctx.solver, steps=ctx.steps)[-1]
            rate = ctx.f(end, x, rows)  # f(t, x(t; θ), θ): its total θ-derivative is dS/dt
            grad_t = 0.0 * t
            for i in range(rate.shape[-1]):
                (row,) = torch.autograd.grad(rate[:, i].sum(), rows, retain_graph=True, create_graph=higher,
                                             allow_unused=True, materialize_grads=True)
                grad_t = grad_t + (grad_s[:, i, :] * row).sum(-1)
        return grad_t, None, None, None, None, None, None


def sensitivity_schwarz(
    f: VectorField,
    x0: torch.Tensor,
    t: torch.Tensor,
    theta: torch.Tensor,
    *,
    t0: float = 0.0,
    solver: Solver = _DEFAULT_SOLVER,
    steps: int = 10,
) -> torch.Tensor:
    r"""Sensitivity :math:`S(t) = \partial x(t)/\partial\theta`, differentiable in :math:`t` by Schwarz's theorem (report §6.4.3).

    The mixed partials commute, so

    .. math:: \frac{dS}{dt} = \frac{\partial^2 x}{\partial\theta\,\partial t}
              = \frac{d}{d\theta}\, f\big(t, x(t; \theta), \theta\big),

    a *first* derivative through the solver. Both passes are first order, so this path
    works with any solver, :class:`Adjoint` included, as long as nothing differentiates the
    result twice in :math:`t` (with :class:`RK4`/:class:`Adaptive` that works too). It gives
    the exact-ODE derivative evaluated on the discrete solution, where :func:`sensitivity`
    differentiates the discrete solution itself: they agree to the solver's accuracy.

    Args:
        f: the vector field (``theta`` arrives as rows ``(batch, m)``).
        x0: start states ``(batch, n)`` at ``t0`` (constant: must not require grad).
        t: end times ``(batch,)``, the differentiable input.
        theta: parameters ``(m,)`` or ``(batch, m)`` (constant: must not require grad; use
            :func:`sensitivity` for derivatives in :math:`\theta` or :math:`x_0`).
        t0: start time.
        solver: :class:`RK4`, :class:`Adaptive` or :class:`Adjoint`.
        steps: RK4 steps.

    Returns:
        :math:`S(t)`, shape ``(batch, n, m)``.
    """
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        raise ValueError(f"t must be a tensor of shape (batch,), got "
                         f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    for name, value in (("theta", theta), ("x0", x0)):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise ValueError(f"{name} must not require grad: sensitivity_schwarz differentiates in t only; "
                             f"use sensitivity(...) for derivatives in {name}")
    check_ode_inputs(x0, torch.stack([torch.full_like(t, t0), t]), steps, solver)
    return _SchwarzSensitivity.apply(t, x0, theta, f, solver, steps, float(t0))
