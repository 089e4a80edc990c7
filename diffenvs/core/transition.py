"""The one transition every face takes: step, horizon flags and the finite-state check.

The Gymnasium face calls :func:`transition` on Python floats (:data:`~diffenvs.core.numerics.SCALAR`),
the vector face and the gradient path on batched torch tensors
(:data:`~diffenvs.core.numerics.TORCH`). What reaching the horizon means (the terminal cost
due, terminated or truncated, the timeout cost of an episode the time limit cuts short) and
what a non-finite step does are written here once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from diffenvs.core.numerics import ArrayNamespace, Components, Integrator, rk4_step
from diffenvs.core.problem import Control, ParamsT, Problem

#: the largest float32: unbounded observation components are bounded by it (a Box with
#: infinite bounds draws warnings from the checkers), and exceeding it ends the episode
OBSERVATION_LIMIT = float(np.finfo(np.float32).max)


class Transition(NamedTuple):
    """The outcome of one step (floats, or tensors of shape ``(batch,)`` for the flags and reward).

    ``x`` is the next internal state, ``reward`` the step's reward, ``terminated`` the
    episode ended inside the problem (an event, or the horizon when the objective is
    defined there), ``truncated`` it was cut (a time limit outside the problem, or a
    non-finite step). ``observation`` holds the observation components at the end of the
    step and ``finite`` whether reward, physical state and observation are representable;
    where they are not, ``x`` is the step's start state, the reward 0, ``terminated``
    false and ``truncated`` true. Without the check, ``observation`` and ``finite`` are
    ``None`` and nothing is masked.
    """

    x: Components
    reward: Any
    terminated: Any
    truncated: Any
    finite: Any = None
    observation: Components | None = None


def horizon_flags(problem: Problem[Any], last: Any) -> tuple[Any, Any]:
    """``(terminal_due, time_limit)``: what reaching ``max_steps`` (``last``) means for ``problem``."""
    if problem.horizon_ends == "terminated":
        return last, False & last
    return False & last, last


def with_timeout_cost(problem: Problem[ParamsT], reward: Any, x1: Components, event: Any, time_limit: Any, params: ParamsT,
                      ns: ArrayNamespace) -> Any:
    """``reward`` minus :meth:`~diffenvs.core.problem.Problem.timeout_cost` where the time limit ends the episode
    and no event did."""
    due = time_limit & ns.logical_not(event)
    if isinstance(due, bool) and not due:  # a Python bool (one environment, or an int step index): nothing to compute
        return reward
    cost = problem.timeout_cost(x1, params, ns)
    if cost is None:
        return reward
    return reward - ns.where(due, cost, 0.0 * cost)


def is_finite(problem: Problem[Any], reward: Any, x: Components, observation: Components, ns: ArrayNamespace) -> Any:
    """Whether the reward and the physical state are finite and the observation inside the float32 range."""
    finite = ns.isfinite(reward)
    for component in problem.state_to_physical(x):
        finite = finite & ns.isfinite(component)
    for component in observation:
        finite = finite & (abs(component) <= OBSERVATION_LIMIT)
    return finite


def _keep(finite: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` where ``finite``, else ``old`` (broadcasting ``finite`` over trailing axes)."""
    return torch.where(finite.reshape(finite.shape + (1,) * (new.dim() - finite.dim())), new, old)


def transition(
    problem: Problem[ParamsT],
    k: Any,
    x: Components,
    control: Control,
    *,
    x0: Components,
    params: ParamsT,
    ns: ArrayNamespace,
    noise: Components | None = None,
    integrate: Integrator = rk4_step,
    check_finite: bool = True,
) -> Transition:
    """Step ``k`` of an episode (from time ``k * problem.dt`` to ``(k + 1) * problem.dt``).

    ``k`` is the step index: an int, or a tensor (one per environment, or a 0-d float
    tensor so a compiled step takes it as an input). The terminal cost is due at step
    ``max_steps - 1`` when the horizon terminates the episode; when it truncates it and no
    event ended the episode inside that step, the problem's timeout cost is paid there
    instead (:func:`with_timeout_cost`). ``check_finite`` computes the
    end-of-step observation and masks non-finite steps (the Gymnasium faces); the gradient
    path leaves it off.
    """
    last = k + 1 == problem.max_steps  # a bool for an int k: definitions take a bool or a tensor
    terminal_due, time_limit = horizon_flags(problem, last)
    x1, reward, event = problem.step(k * problem.dt, x, control, x0=x0, params=params, ns=ns,
                                     terminal_due=terminal_due, noise=noise, integrate=integrate)
    reward = with_timeout_cost(problem, reward, x1, event, time_limit, params, ns)
    terminated = event | terminal_due
    if not check_finite:
        return Transition(x1, reward, terminated, time_limit)
    observation = problem.observation((k + 1) * problem.dt, x1, params, ns)
    finite = is_finite(problem, reward, x1, observation, ns)
    if ns.eager:  # one environment on Python floats: a branch, not a masked select (the single face's hot path)
        if finite:
            return Transition(x1, reward, terminated, time_limit, True, observation)
        return Transition(x, 0.0, False, True, False, observation)
    return Transition(
        x=tuple(_keep(finite, new, old) for new, old in zip(x1, x)),
        reward=_keep(finite, reward, torch.zeros_like(reward)),
        terminated=terminated & finite,
        truncated=time_limit | ns.logical_not(finite),
        finite=finite,
        observation=observation,
    )
