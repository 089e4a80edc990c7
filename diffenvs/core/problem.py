"""The one definition of an environment, and the step every face takes with it.

A definition is a frozen dataclass holding only constants (its ``params``, the seconds
per step ``dt`` and the number of steps ``max_steps``; the horizon is ``max_steps * dt``)
plus pure functions of an explicit state. Faces (Gymnasium, vector, gradient path) never
reach past this interface, and step it through :func:`diffenvs.core.transition.transition`.

The state is a tuple of components, each a Python float (one environment) or a torch
tensor of shape ``(batch,)`` (many environments, differentiable). Controls ``u`` are in
physical units; the Gymnasium action ``a`` in ``[-1, 1]`` maps to them affinely
(:meth:`Problem.control_from_action`). A step's control is :class:`Held` (constant over
the step) or :class:`Feedback` (a function of time and state inside the ODE).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar, cast

import numpy as np
import torch

from diffenvs.core.constants import FLOAT32_MAX, check_episode, check_positive_fields, plain_constants
from diffenvs.core.numerics import TORCH, ArrayNamespace, Components, Integrator, rk4_step, stack
from diffenvs.core.validation import check_choice, check_finite, check_integer, check_positive, is_real

# the checks every definition uses, importable from here as from diffenvs.core.validation
__all__ = ["FLOAT32_MAX", "Control", "Feedback", "Held", "OdeProblem", "ParamsT", "Problem", "ProblemAttributes",
           "check_choice", "check_episode", "check_finite", "check_integer", "check_positive", "check_positive_fields",
           "is_real", "plain_constants"]

#: the type of a definition's constants (its ``params``: a frozen dataclass of numbers, arrays or tensors)
ParamsT = TypeVar("ParamsT")


class Held(NamedTuple):
    """A control held constant over the step: one value per control component (physical units)."""

    u: Components


class Feedback(NamedTuple):
    """Continuous feedback: ``fn(t, x) -> control components``, evaluated inside the ODE right-hand side."""

    fn: Callable[[Any, Components], Components]


#: the control of one step
Control = Held | Feedback


class Problem(ABC, Generic[ParamsT]):
    """Interface shared by every environment definition, generic over the type of its constants ``params``.

    Subclasses are frozen dataclasses with at least the fields ``params``, ``dt`` (seconds
    per step) and ``max_steps`` (steps per episode), and set the class-level descriptions
    below. The horizon is ``max_steps * dt`` (:attr:`horizon`). A definition names its
    constants' type, ``class Cartpole(OdeProblem[CartpoleParams])``, so ``problem.params`` and
    the ``params`` its functions take are typed.
    """

    params: ParamsT
    max_steps: int
    if TYPE_CHECKING:  # a dataclass field of most definitions, a class constant or a property of others

        @property
        def dt(self) -> float:
            """Seconds per step."""

    #: the Gymnasium id the definition is registered as (set by
    #: :func:`~diffenvs.core.registration.register_problem`)
    env_id: ClassVar[str | None] = None

    #: names and units of the physical state, in the order of ``env.unwrapped.state``
    state_names: ClassVar[tuple[str, ...]]
    state_units: ClassVar[tuple[str, ...]]
    #: names of the observation components and the bounds of the observation box
    observation_names: ClassVar[tuple[str, ...]]
    observation_low: ClassVar[tuple[float, ...]]
    observation_high: ClassVar[tuple[float, ...]]
    #: names and units of the physical control
    control_names: ClassVar[tuple[str, ...]]
    control_units: ClassVar[tuple[str, ...]]
    #: what reaching ``max_steps`` means: "terminated" (the objective is defined at the
    #: horizon) or "truncated" (a time limit outside the problem)
    horizon_ends: ClassVar[str] = "terminated"
    #: random draws of a start, (kind, count) with kind "uniform" on [0, 1) or "normal"
    initial_draws: ClassVar[tuple[str, int]] = ("uniform", 0)
    #: standard normal draws per step (process noise)
    step_noise: ClassVar[int] = 0
    #: whether a feedback rollout may be one ODE solve over the whole horizon (see :class:`OdeProblem`)
    whole_horizon_solve: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """Validation of a definition's fields (dataclasses call it; a definition with more fields overrides it)."""
        plain_constants(self)
        check_episode(self)

    # ---- bounds and the Gymnasium action ---------------------------------------------
    @property
    @abstractmethod
    def control_low(self) -> tuple[float, ...]:
        """Lower bound of each control component (physical units)."""

    @property
    @abstractmethod
    def control_high(self) -> tuple[float, ...]:
        """Upper bound of each control component (physical units)."""

    @property
    def horizon(self) -> float:
        """The episode's length ``max_steps * dt``: seconds (steps for a discrete-time problem, whose ``dt`` is 1)."""
        return self.max_steps * self.dt

    @property
    def control_dim(self) -> int:
        return len(self.control_names)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    def control_from_action(self, action: Components, ns: ArrayNamespace) -> Components:
        """Physical control from a Gymnasium action in ``[-1, 1]`` (clipped to it first)."""
        return tuple(
            lo + 0.5 * (ns.clip(a, -1.0, 1.0) + 1.0) * (hi - lo)
            for a, lo, hi in zip(action, self.control_low, self.control_high)
        )

    def clip_control(self, u: torch.Tensor) -> torch.Tensor:
        """Physical controls ``(..., control_dim)`` moved into the control set as ``env.step`` moves an action
        outside ``[-1, 1]``: here clamped to ``[control_low, control_high]`` (zero gradient where clipped)."""
        lows, highs = self.control_low, self.control_high
        if len(set(lows)) == 1 and len(set(highs)) == 1:  # one bound for every component: numbers, no tensors to build
            return torch.clamp(u, lows[0], highs[0])
        low, high = (torch.tensor(b, dtype=u.dtype, device=u.device) for b in (lows, highs))
        return torch.clamp(u, low, high)

    def action_from_control(self, control: np.ndarray) -> np.ndarray:
        """Gymnasium action in ``[-1, 1]`` from a physical control (numpy, inverse map)."""
        low, high = np.asarray(self.control_low), np.asarray(self.control_high)
        return np.clip(2.0 * (np.asarray(control) - low) / (high - low) - 1.0, -1.0, 1.0)

    # ---- pure functions of the state ---------------------------------------------------
    @abstractmethod
    def initial_state(self, draws: Any, params: ParamsT, ns: ArrayNamespace) -> Components:
        """Start state from the random ``draws`` declared in :attr:`initial_draws`.

        ``draws`` is a list of floats (one environment) or a tensor ``(batch, count)``;
        :func:`~diffenvs.core.numerics.columns` gives its components either way.
        """

    @abstractmethod
    def observation(self, t: Any, x: Components, params: ParamsT, ns: ArrayNamespace) -> Components:
        """Observation components at time ``t`` in state ``x``."""

    @abstractmethod
    def step(self, t: Any, x: Components, control: Control, *, x0: Components, params: ParamsT, ns: ArrayNamespace,
             terminal_due: Any, noise: Components | None = None,
             integrate: Integrator = rk4_step) -> tuple[Components, Any, Any]:
        """Advance one step from time ``t`` and state ``x``: ``(x_next, reward, event)``.

        ``control`` is :class:`Held` (constant over the step, what the Gymnasium faces do)
        or :class:`Feedback` (evaluated inside the ODE right-hand side); ``x0`` is the
        episode's start; ``terminal_due`` says the step ends the horizon, so its terminal
        cost is paid; ``noise`` holds the step's :attr:`step_noise` standard normal draws;
        ``integrate`` is the one-step integrator (the faces' RK4 unless the gradient path
        asks for another). ``event`` says the episode terminated inside the step. The faces
        call this through :func:`diffenvs.core.transition.transition`.
        """

    def timeout_cost(self, x: Components, params: ParamsT, ns: ArrayNamespace) -> Any:
        """Cost paid when the time limit ends an episode before its objective is reached, or ``None`` for none.

        A problem whose objective is defined at an event (:attr:`horizon_ends` ``"truncated"``)
        prices here what an episode cut by the time limit has left to do, e.g. the cost of a
        fixed feasible completion from ``x``, so that never reaching the event pays no less
        than reaching it. :func:`~diffenvs.core.transition.transition` subtracts it from the
        reward of the step that reaches ``max_steps`` when no event happened in it, on every
        face alike.
        """
        return None

    def state_to_physical(self, x: Components) -> Components:
        """The documented physical state (``env.unwrapped.state``) from the internal one."""
        return x

    def state_from_physical(self, state: Components, params: ParamsT, ns: ArrayNamespace) -> Components:
        """The internal state from a physical one (``reset(options={"state": ...})``)."""
        return tuple(state)

    def check_state(self, state: np.ndarray) -> None:
        """Raise ``ValueError`` if a user-given physical state is not allowed."""

    def params_like(self, params: ParamsT, like: torch.Tensor) -> ParamsT:
        """``params`` with array fields as tensors of ``like``'s dtype and device."""
        if not dataclasses.is_dataclass(params) or isinstance(params, type):
            return params
        changes = {
            f.name: torch.as_tensor(getattr(params, f.name), dtype=like.dtype, device=like.device)
            for f in dataclasses.fields(params)
            if isinstance(getattr(params, f.name), np.ndarray)
        }
        # replace() gives an instance of params' own class, which is ParamsT
        return cast(ParamsT, dataclasses.replace(params, **changes)) if changes else params

    def render(self, state: np.ndarray) -> np.ndarray:
        """An RGB frame (``uint8``, height x width x 3) of a physical state."""
        raise NotImplementedError(f"{type(self).__name__} has no rendering")

    def render_episode(self, states: np.ndarray) -> np.ndarray:
        """The frame of an episode so far: ``states`` holds its physical states, one row each, the current one last.

        The Gymnasium face renders through this; by default it draws the current state
        (:meth:`render`). A problem drawn in a phase plane overrides it to draw the path too.
        """
        return self.render(states[-1])


def _number(value: Any) -> Any:
    """A tensor as the number (0-d) or numpy array it holds, detached; anything else as it is."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    if value.dim() == 0:
        return bool(value) if value.dtype == torch.bool else value.item()
    return value.numpy()


def numeric_constants(problem: Problem[Any]) -> Problem[Any]:
    """``problem`` with its tensor constants (fields, and fields of its ``params``) as numbers, checked again.

    The problem is built again from its fields (``dataclasses.replace``), so its ``__post_init__``
    checks the values; a problem without tensor constants is returned as it is.
    """
    if not dataclasses.is_dataclass(problem):
        return problem
    fields = [f for f in dataclasses.fields(problem) if f.init]
    changes = {f.name: _number(getattr(problem, f.name)) for f in fields
               if isinstance(getattr(problem, f.name), torch.Tensor)}
    params = problem.params
    if dataclasses.is_dataclass(params) and not isinstance(params, type) \
            and any(f.name == "params" for f in fields):
        numbers = {f.name: _number(getattr(params, f.name)) for f in dataclasses.fields(params)
                   if f.init and isinstance(getattr(params, f.name), torch.Tensor)}
        if numbers:
            changes["params"] = dataclasses.replace(params, **numbers)
    return dataclasses.replace(problem, **changes) if changes else problem


class ProblemAttributes:
    """The documented attributes every face exposes from its ``problem``.

    A face computes with numbers: setting its ``problem`` turns the constants given as tensors
    (a 0-d tensor a number, others numpy arrays) into what the same constants given as numbers
    would be, and builds the problem again, so that its checks see them: a negative or NaN mass
    given as a tensor is refused as the same float is (``ValueError`` naming it). Only the
    gradient path differentiates constants (``rollout(..., params=...)``).
    """

    @property
    def problem(self) -> Problem[Any]:
        """The definition this face steps."""
        return self.__dict__["_problem"]

    @problem.setter
    def problem(self, problem: Problem[Any]) -> None:
        self._problem = numeric_constants(problem)

    @property
    def dt(self) -> float:
        """Seconds per step."""
        return self.problem.dt

    @property
    def params(self) -> Any:
        """The physical constants."""
        return self.problem.params


class OdeProblem(Problem[ParamsT]):
    r"""A continuous-time problem :math:`\dot x = f(t, x, u; p)` with the control held over each step.

    The step integrates with :func:`~diffenvs.core.numerics.rk4_step` and returns the reward
    (:meth:`step_reward`)

    .. math:: r_k = -[\Phi(x_{k+1}) - \Phi(x_k)] - \int_{t_k}^{t_{k+1}} c(t, x, u)\,dt
                    - \mathbb{1}[\text{end}]\, \ell(x_{k+1}, x_0)

    with the potential :math:`\Phi` (:meth:`potential`), the running cost :math:`c`
    (:meth:`running_cost`, integrated by the same RK4 step as a quadrature component)
    and the terminal cost :math:`\ell` (:meth:`terminal_cost`). If :meth:`event` is
    defined the episode terminates when it becomes non-negative, and the returned state is
    the state *at* the event, located inside the step by secant iterations on the step
    length (differentiable: the located step length is a function of the state).
    """

    #: secant iterations that refine the event time inside a step
    event_iterations: ClassVar[int] = 2
    #: whether a feedback rollout may be one ODE solve over the whole horizon (the adjoint's
    #: memory-light path, :func:`~diffenvs.core.rollout.rollout`): true when the reward is
    #: :meth:`step_reward` of the state on the step grid and the running-cost integral, and
    #: no :meth:`event` ends an episode inside the horizon. A subclass that defines
    #: :meth:`event` or :meth:`timeout_cost` or replaces :meth:`step` or :meth:`advance` and
    #: does not declare the capability itself gets ``False``.
    whole_horizon_solve: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        replaced = ("event", "step", "advance", "timeout_cost")
        if "whole_horizon_solve" not in vars(cls) and any(name in vars(cls) for name in replaced):
            cls.whole_horizon_solve = False

    @abstractmethod
    def vector_field(self, t: Any, x: Components, u: Components, params: ParamsT, ns: ArrayNamespace) -> Components:
        r"""The time derivative :math:`\dot x` of each state component."""

    #: whether :meth:`running_cost` is in use (a definition with one sets this)
    has_running_cost: ClassVar[bool] = False

    def running_cost(self, t: Any, x: Components, u: Components, params: ParamsT, ns: ArrayNamespace) -> Any:
        """Running cost per second (used when :attr:`has_running_cost`)."""
        raise NotImplementedError

    def terminal_cost(self, x: Components, x0: Components, params: ParamsT, ns: ArrayNamespace) -> Any:
        """Cost at the end of the episode, or ``None`` for none."""
        return None

    def potential(self, x: Components, params: ParamsT, ns: ArrayNamespace) -> Any:
        """Potential whose decrease is paid as reward each step, or ``None`` for none."""
        return None

    def event(self, x: Components, params: ParamsT, ns: ArrayNamespace) -> Any:
        """Event function: the episode terminates where it crosses zero upwards; ``None`` for none."""
        return None

    def dynamics(self, t: Any, x: torch.Tensor, u: torch.Tensor, params: Any = None) -> torch.Tensor:
        r"""Batched torch :math:`\dot x = f(t, x, u; p)`: ``x`` of shape ``(..., n)``, ``u`` of shape ``(..., m)``."""
        params = self.params if params is None else params
        return stack(self.vector_field(t, x.unbind(-1), u.unbind(-1), params, TORCH), like=x)

    def advance(self, t: Any, x: Components, control: Control, params: ParamsT, ns: ArrayNamespace, h: Any,
                integrate: Integrator = rk4_step) -> Components:
        """Integrate over a step ``h``; the running cost rides along as a last component."""
        has_cost = self.has_running_cost
        feedback = control.fn if isinstance(control, Feedback) else None
        held_control = control.u if isinstance(control, Held) else None

        def f(s: Any, z: Components, held: Any) -> Components:
            state = z[:-1] if has_cost else z
            v = held if feedback is None else feedback(s, state)
            derivative = self.vector_field(s, state, v, params, ns)
            if has_cost:
                return (*derivative, self.running_cost(s, state, v, params, ns))
            return derivative

        z0 = (*x, 0.0 * x[0]) if has_cost else x
        return integrate(f, t, z0, h, held_control)

    def step_reward(self, x: Components, x1: Components, cost_increment: Any, x0: Components, terminal_due: Any,
                    params: ParamsT, ns: ArrayNamespace) -> Any:
        r"""The reward of a step from ``x`` to ``x1``.

        .. math:: r = -[\Phi(x_1) - \Phi(x)] - \Delta c - \mathbb{1}[\text{due}]\,\ell(x_1, x_0)

        ``cost_increment`` is :math:`\Delta c`, the running cost integrated over the step
        (``None`` without a running cost); ``terminal_due`` says the terminal cost
        :math:`\ell` is paid. Components may carry any leading shape (the whole-horizon
        solve passes the step grid at once).
        """
        reward = 0.0 * x1[0]
        potential0 = self.potential(x, params, ns)
        if potential0 is not None:
            reward = reward - (self.potential(x1, params, ns) - potential0)
        if cost_increment is not None:
            reward = reward - cost_increment
        if terminal_due is False and not ns.eager:
            # not due at any trajectory (an eager rollout's step before the last): the cost enters as 0 * cost, which
            # is 0, or nan where the cost is not finite, and whose gradient is 0: computed without a graph to go back
            with torch.no_grad():
                terminal = self.terminal_cost(x1, x0, params, ns)
            return reward if terminal is None else reward - 0.0 * terminal
        terminal = self.terminal_cost(x1, x0, params, ns)
        if terminal is not None:
            reward = reward - ns.where(terminal_due, terminal, 0.0 * terminal)
        return reward

    def step(self, t: Any, x: Components, control: Control, *, x0: Components, params: ParamsT, ns: ArrayNamespace,
             terminal_due: Any, noise: Components | None = None,
             integrate: Integrator = rk4_step) -> tuple[Components, Any, Any]:  # noqa: D102 (see Problem.step)
        has_cost = self.has_running_cost
        z1 = self.advance(t, x, control, params, ns, self.dt, integrate)
        event = False
        g0 = self.event(x, params, ns)
        if g0 is not None:
            z1, event = self._locate_event(t, x, control, params, ns, g0, z1, has_cost, integrate)
        x1 = z1[:-1] if has_cost else z1
        reward = self.step_reward(x, x1, z1[-1] if has_cost else None, x0, event | terminal_due, params, ns)
        return x1, reward, event

    def _locate_event(self, t: Any, x: Components, control: Control, params: ParamsT, ns: ArrayNamespace, g0: Any,
                      z1: Components, has_cost: bool, integrate: Integrator) -> tuple[Components, Any]:
        """Replace the end of a step that crossed the event surface by the state at the crossing."""
        state1 = z1[:-1] if has_cost else z1
        g1 = self.event(state1, params, ns)
        crossed = g1 >= 0.0
        if ns.eager and not crossed:
            return z1, False
        one = 1.0 + 0.0 * g1
        # secant iterations on the step length tau, starting from the bracket (0, g0), (dt, g1)
        tau_prev, g_prev = 0.0 * g1, g0
        tau, g = self.dt * one, g1
        z = z1
        for _ in range(self.event_iterations + 1):
            slope = g - g_prev
            ok = slope != 0.0
            safe = ns.where(ok, slope, one)
            # environments that did not cross keep the full step (and finite values)
            secant = ns.clip(tau - g * (tau - tau_prev) / safe, 0.0, self.dt)
            tau_next = ns.where(ok & crossed, secant, tau)
            tau_prev, g_prev, tau = tau, g, tau_next
            z = self.advance(t, x, control, params, ns, tau, integrate)
            g = self.event(z[:-1] if has_cost else z, params, ns)
        if ns.eager:
            return z, True
        return tuple(ns.where(crossed, a, b) for a, b in zip(z, z1)), crossed
