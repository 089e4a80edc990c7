r"""The memory-light feedback rollout: one ``odeint_adjoint`` solve over the whole horizon.

``control="feedback"`` with :class:`~diffenvs.core.solvers.Adjoint` on an
:class:`~diffenvs.core.problem.OdeProblem` that declares
:attr:`~diffenvs.core.problem.OdeProblem.whole_horizon_solve` (no event, the standard reward; and
without process noise) skips the loop over steps: the augmented state :math:`z = (x, c)` follows

.. math:: \dot x = f(t, x, u(t), p), \qquad \dot c = \ell_c(t, x, u(t), p), \qquad
          u(t) = \pi(o(t, x)), \qquad c(0) = 0

(:math:`c` only when the problem has a running cost :math:`\ell_c`), solved once and returned on
the grid :math:`t_k = k\,\Delta t`, :math:`k = 0 \dots K` with
:math:`K = \min(\text{steps}, \text{max\_steps})` when the horizon terminates the episode (else
:math:`K = \text{steps}`). The rewards are :meth:`OdeProblem.step_reward`, as in :meth:`OdeProblem.step`:

.. math:: r_k = -[\Phi(x_{k+1}) - \Phi(x_k)] - [c(t_{k+1}) - c(t_k)]
                - \mathbb{1}[k + 1 = \text{max\_steps}]\, \ell(x_{k+1}, x_0).

Steps after the terminal step (``steps > max_steps``) keep the final state with zero reward, as
the per-step loop does. torchdiffeq's ``odeint_adjoint`` runs its forward solve without a graph
and saves only the grid solution (plus ``t`` and the parameters), so the memory kept for backward
is :math:`(K + 1) \times \text{batch} \times (n + 1)` numbers (:math:`n` without :math:`c`) and a
few grid-sized tensors of the reward, whatever the policy's size and the solver's steps. The
controls are clipped to the bounds, as on the per-step path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torchdiffeq

from diffenvs.core.checks import check_policy_outputs, policy_output
from diffenvs.core.loop import Step, Trajectory
from diffenvs.core.numerics import TORCH, Components, stack
from diffenvs.core.problem import OdeProblem
from diffenvs.core.solvers import Adjoint
from diffenvs.core.transition import horizon_flags


def whole_horizon_rollout(step: Step, problem: OdeProblem[Any], policy: torch.nn.Module, start: Components,
                          steps: int, solver: Adjoint, leaves: list[torch.Tensor], check: bool) -> Trajectory:
    """The feedback rollout of ``steps`` steps from the internal state ``start`` as one adjoint solve.

    With ``check``, the policy's output at the start is checked before the solve calls it, and its
    outputs at the steps' starts after it (where the state they came from is finite).
    """
    like = step.like
    with torch.no_grad():  # the policy's output checked before the solve calls it
        first = policy_output(policy(step.observe(0.0, start)), 0, step.batch, problem.control_dim, like)
    if check:
        check_policy_outputs(first[None], like[None])
    solved = min(steps, problem.max_steps) if problem.horizon_ends == "terminated" else steps
    solution = _solve(step, problem, policy, start, solved, solver, leaves)  # (solved + 1, batch, n [+ 1])
    trajectory = _trajectory(step, problem, solution, start, steps, solved)
    with torch.no_grad():  # the control at each step's start, recorded for inspection
        n = problem.state_dim
        raw = torch.stack([policy(step.observe(k * problem.dt, solution[min(k, solved), :, :n].unbind(-1)))
                           for k in range(steps)])
    trajectory = dataclasses.replace(trajectory, controls=problem.clip_control(raw))
    if check:
        check_policy_outputs(raw, trajectory.states[:-1])
    return trajectory


def _solve(step: Step, problem: OdeProblem[Any], policy: torch.nn.Module, start: Components, solved: int,
           solver: Adjoint, leaves: list[torch.Tensor]) -> torch.Tensor:
    """The augmented state on the grid of ``solved + 1`` steps: ``(solved + 1, batch, n [+ 1])``."""
    n, has_cost, params, like = problem.state_dim, problem.has_running_cost, step.params, step.like

    def rhs(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = z.unbind(-1)[:n]
        u = problem.clip_control(policy(step.observe(t, x))).unbind(-1)
        derivative = problem.vector_field(t, x, u, params, TORCH)
        if has_cost:
            derivative = (*derivative, problem.running_cost(t, x, u, params, TORCH))
        return stack(derivative, like=z)

    z0 = stack([*start, 0.0 * start[0]] if has_cost else start, like=like)
    grid = torch.arange(solved + 1, dtype=like.dtype, device=like.device) * problem.dt
    solution: torch.Tensor = torchdiffeq.odeint_adjoint(rhs, z0, grid, rtol=solver.rtol, atol=solver.atol,
                                                        method=solver.method, adjoint_params=tuple(leaves))
    return solution


def _trajectory(step: Step, problem: OdeProblem[Any], solution: torch.Tensor, start: Components, steps: int,
                solved: int) -> Trajectory:
    """The states, rewards, done flags and times of the grid solution (controls: filled in by the caller)."""
    n, batch, like = problem.state_dim, step.batch, step.like
    xs = solution[..., :n].unbind(-1)  # components of shape (solved + 1, batch)
    x, x1 = tuple(a[:-1] for a in xs), tuple(a[1:] for a in xs)  # each step's start and end on the grid
    cost = solution[1:, :, n] - solution[:-1, :, n] if problem.has_running_cost else None
    step_index = torch.arange(solved, device=like.device).unsqueeze(-1)
    terminal_due, _ = horizon_flags(problem, step_index + 1 == problem.max_steps)
    rewards = problem.step_reward(x, x1, cost, start, terminal_due, step.params, TORCH)  # (solved, batch)
    rewards = rewards.expand(solved, batch)
    frozen = steps - solved  # steps after the episode's end: frozen state, zero reward
    states = stack(problem.state_to_physical(xs), like=like)  # (solved + 1, batch, n)
    states = torch.cat([states, states[-1:].expand(frozen, -1, -1)])
    rewards = torch.cat([rewards, rewards.new_zeros(frozen, batch)])
    ended = torch.arange(steps + 1, device=like.device) >= problem.max_steps
    done = horizon_flags(problem, ended)[0].unsqueeze(-1).expand(-1, batch).contiguous()
    times = torch.arange(steps + 1, dtype=like.dtype, device=like.device) * problem.dt
    return Trajectory(states, like.new_zeros(0), rewards, done, times)
