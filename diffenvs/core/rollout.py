r"""The gradient path: a batched, differentiable torch rollout of any definition.

``rollout(problem, policy, x0)`` integrates a batch of trajectories and returns states,
controls and rewards with autograd, differentiable with respect to the policy's parameters,
the initial state ``x0`` and tensor fields of ``params``. Two control modes:

* ``control="sampled"``: the control :math:`u_k = \pi(o(t_k, x_k))` is held over each step,
  exactly what the Gymnasium and vector faces do (the rollout agrees with ``env.step``);
* ``control="feedback"``: :math:`u(t) = \pi(o(t, x(t)))` is evaluated inside the ODE
  right-hand side (continuous-time neural-ODE control).

Solvers are small objects (:mod:`diffenvs.core.solvers`): :class:`RK4` (the faces' own fixed
step; fast, works under ``torch.func``), :class:`Adaptive` (torchdiffeq ``odeint``, e.g. dopri5
with rtol/atol) and :class:`Adjoint` (torchdiffeq ``odeint_adjoint``: gradients by the adjoint
ODE, memory free of solver stages and network activations).

:func:`rollout` is a dispatcher: it validates its arguments (:mod:`diffenvs.core.checks`) and
runs one of three paths over the same step rule: the eager loop (:func:`diffenvs.core.loop.loop`),
the compiled chunks of ``RK4(compile=True)`` (:mod:`diffenvs.core.fused`), or, for
``control="feedback"`` with :class:`Adjoint` on a problem that declares
:attr:`~diffenvs.core.problem.OdeProblem.whole_horizon_solve` (no event, the standard reward, no
process noise, from the episode's start), a single ``odeint_adjoint`` solve over the whole horizon
sampled on the step grid (:mod:`diffenvs.core.adjoint`), whose memory kept for backward is the grid
of states, flat in everything but the number of steps.

**Checks.** ``check=True`` checks the values of ``x0``, ``noise``, a tensor of controls and every
control the policy returns at a step's start for finiteness (``ValueError`` naming the argument,
and the step for the policy). The policy's controls are checked once, after the loop (one
synchronisation), and only where the state they came from is finite: a trajectory that diverges
by itself is not an error here. (:class:`Adaptive` and :class:`Adjoint` check each step's control
before integrating it, as their step-size control synchronises anyway; the whole-horizon adjoint
solve checks the first control only, before the solve.) ``check=False`` skips these value checks
(inside compiled or training loops); types, shapes, dtypes and ``params`` are checked either way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from diffenvs.core.adjoint import whole_horizon_rollout
from diffenvs.core.checks import (
    Policy,
    check_policy_outputs,
    checked_arguments,
    checked_params,
    checked_tensor,
    gradient_leaves,
    tensor_fields,
)
from diffenvs.core.fused import compiled_rollout
from diffenvs.core.loop import Step, Trajectory, loop
from diffenvs.core.numerics import TORCH, rk4_step, stack
from diffenvs.core.problem import OdeProblem, Problem
from diffenvs.core.solvers import METHODS, RK4, Adaptive, Adjoint, Solver, odeint_integrator
from diffenvs.core.validation import check_integer

__all__ = ["METHODS", "RK4", "Adaptive", "Adjoint", "Policy", "Solver", "Step", "Trajectory", "rollout",
           "tensor_fields", "time_limited"]


def time_limited(problem: Problem[Any], steps: int) -> Problem[Any]:
    """The problem whose rollout of ``steps`` steps is an episode cut there by its time limit.

    For a problem whose horizon is a time limit outside the objective (``horizon_ends ==
    "truncated"``, e.g. Zermelo), a shorter rollout is a shorter time limit: the same problem with
    ``max_steps = steps``, so that what the time limit costs (:meth:`Problem.timeout_cost`) is paid
    at the rollout's end and a trajectory that never arrives cannot score better than one that
    does. Otherwise the problem itself: a shorter rollout is a prefix of the episode.
    """
    check_integer("steps", steps)
    if problem.horizon_ends != "truncated" or steps == problem.max_steps:
        return problem
    if not dataclasses.is_dataclass(problem):
        raise TypeError(f"problem must be a dataclass definition, got {type(problem).__name__}")
    return dataclasses.replace(problem, max_steps=steps)


def rollout(problem: Problem[Any], policy: Policy | torch.Tensor, x0: torch.Tensor, *, steps: int | None = None,
            params: Any = None, control: str = "sampled",
            solver: Solver = RK4(),  # noqa: B008 (a frozen dataclass: an immutable default)
            noise: torch.Tensor | None = None, check: bool = True, first_step: int = 0,
            episode_start: torch.Tensor | None = None) -> Trajectory:
    r"""Roll a batch of trajectories out of ``problem`` under ``policy``.

    Controls outside the problem's control set are moved into it by ``problem.clip_control``
    (clamped to ``[control_low, control_high]``; ``LinearSysID`` then projects onto the ball
    :math:`\|u\| \le \gamma`), what ``env.step`` does to an action outside ``[-1, 1]``, with zero
    gradient where clipped. ``Trajectory.controls`` holds the clipped controls.

    Args:
        problem: the definition (e.g. ``diffenvs.envs.cartpole.Cartpole()``, or ``gymnasium.make(id).unwrapped.problem``).
        policy: a callable from observations ``(batch, obs_dim)`` to physical controls ``(batch, m)`` of ``x0``'s
            dtype and device (any torch module), or open-loop controls ``(steps, batch, m)`` (or ``(steps, m)``).
        x0: physical start states ``(batch, n)``; its dtype and device are used throughout.
        steps: number of steps (default ``problem.max_steps``); the terminal cost is paid at step
            ``problem.max_steps`` as on the Gymnasium face.
        params: physical constants (default ``problem.params``), checked as the problem's constructor checks its
            own (tensor fields excepted); tensor fields get gradients.
        control: ``"sampled"`` (held over each step, as ``env.step``) or ``"feedback"``.
        solver: :class:`RK4` (default), :class:`Adaptive` or :class:`Adjoint`.
        noise: process noise ``(steps, batch, problem.step_noise)`` for stochastic definitions (fixed draws).
        check: whether to check values for finiteness (see the module docstring, **Checks**).
        first_step: the episode's step at which ``x0`` stands: the rollout covers steps
            ``first_step ... first_step + steps - 1`` on the episode's clock (a window of a longer episode).
        episode_start: the physical state ``(batch, n)`` the episode started from (default ``x0``).
    """
    steps = problem.max_steps if steps is None else steps
    policy = checked_arguments(problem, policy, x0, steps, control, solver, noise, check)
    check_integer("first_step", first_step, least=0)
    if episode_start is not None:
        checked_tensor("episode_start", episode_start, tuple(x0.shape), x0, check, "trajectory")
    params = problem.params_like(checked_params(problem, params), x0)
    leaves = gradient_leaves(policy, params, solver)
    integrate = rk4_step if isinstance(solver, RK4) else odeint_integrator(solver, leaves)
    checked = check and not isinstance(policy, torch.Tensor)  # a tensor of controls was checked whole, before the loop
    step = Step(problem, params, control, integrate, x0.shape[0], x0, check_each=checked and not isinstance(solver, RK4))
    x = problem.state_from_physical(x0.unbind(-1), params, TORCH)
    start = x if episode_start is None else problem.state_from_physical(episode_start.unbind(-1), params, TORCH)
    if (control == "feedback" and isinstance(solver, Adjoint) and isinstance(problem, OdeProblem)
            and isinstance(policy, torch.nn.Module) and problem.whole_horizon_solve
            and first_step == 0 and episode_start is None and noise is None):
        return whole_horizon_rollout(step, problem, policy, start, steps, solver, leaves, check)
    states0 = stack(problem.state_to_physical(x), like=x0)
    if isinstance(solver, RK4) and solver.compile:
        trajectory, raw = compiled_rollout(step, policy, x, start, states0, steps, noise, solver.chunk, first_step)
    else:
        trajectory, raw = loop(step, policy, x, start, states0, steps, noise, first_step)
    if checked and isinstance(solver, RK4):  # once, after the loop: one synchronisation for the rollout
        check_policy_outputs(raw, trajectory.states[:-1])
    return trajectory
