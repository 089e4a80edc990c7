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

**Events.** The eager RK4 loop of a problem with an :meth:`~diffenvs.core.problem.OdeProblem.event`
(Zermelo's crossing) locates the event only in the step where a trajectory crosses it, and stops
integrating once every trajectory is done (:class:`LocatedStep`): the same trajectory and gradients,
bit for bit, as locating it in every step, which is what the problem's step does on a batch (it may not
branch on tensor values), for a quarter of the integrations of every step before the crossing and none after.

**Checks.** ``check=True`` checks the values of ``x0``, ``noise``, a tensor of controls and every
control the policy returns at a step's start for finiteness (``ValueError`` naming the argument,
and the step for the policy). The policy's controls are checked once, after the loop (one
synchronisation), and only where the state they came from is finite: a trajectory that diverges
by itself is not an error here. (:class:`Adaptive` and :class:`Adjoint` check each step's control
before integrating it, as their step-size control synchronises anyway; the whole-horizon adjoint
solve checks the first control only, before the solve.) It also checks that the episode's start
(``episode_start``, else ``x0``) is a state the faces would start from
(:meth:`~diffenvs.core.problem.Problem.check_state`: DecayDesign's variance positive, Zermelo's boat
below the far bank). ``check=False`` skips these value checks (inside compiled or training loops); types,
shapes, dtypes (``x0`` float32 or float64: half precision is refused) and ``params`` are checked either way.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, cast

import torch

from diffenvs.core.adjoint import whole_horizon_rollout
from diffenvs.core.checks import (
    Policy,
    check_policy_outputs,
    check_start_states,
    checked_arguments,
    checked_params,
    checked_tensor,
    gradient_leaves,
    tensor_fields,
)
from diffenvs.core.fused import compiled_rollout
from diffenvs.core.loop import Step, Trajectory, loop
from diffenvs.core.numerics import TORCH, Components, rk4_step, stack
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


class LocatedStep(Step):
    """A :class:`Step` of a problem with an :meth:`~diffenvs.core.problem.OdeProblem.event` that locates the event only
    in the steps where a trajectory crosses it; the same states, rewards, flags and controls as the :class:`Step`.

    The step is first taken plainly, without event location (one integration, where the located
    step takes ``event_iterations + 2``). If a trajectory not yet done crossed (the event function
    at the step's end is non-negative), the located :class:`Step` is taken from the same state
    instead, for the whole batch (with ``control="sampled"`` on the same controls, so the policy is not
    evaluated again). Where no trajectory crossed the two agree exactly: the located step keeps
    the plain step's end state and reward wherever the event did not happen. Once every trajectory is done,
    the steps left only evaluate the policy for the controls they record, without integrating (their states
    are kept and their rewards zero, as the :class:`Step` leaves them). One synchronisation per step (the
    crossing test, or the test that every trajectory is done).
    """

    def __call__(self, source: Policy | torch.Tensor, k: Any, x: Components, done: torch.Tensor | bool,
                 noise: torch.Tensor | None, start: Components
                 ) -> tuple[Components, torch.Tensor, torch.Tensor | bool, torch.Tensor, torch.Tensor]:
        if done is True or (isinstance(done, torch.Tensor) and bool(done.all())):
            return self._idle(source, k, x, done)
        plain = self._plain(source, k, x, done, noise, start)
        crossed = cast(OdeProblem[Any], self.problem).event(plain[0], self.params, TORCH) >= 0.0  # see located()
        if not bool((crossed if isinstance(done, bool) else crossed & ~done).any()):
            return plain
        again = plain[4] if self.control == "sampled" and not isinstance(source, torch.Tensor) else source
        return Step.__call__(self, again, k, x, done, noise, start)

    @functools.cached_property
    def _plain(self) -> Step:
        """The step without event location."""
        return Step(_without_event(self.problem), self.params, self.control, self.integrate, self.batch, self.like,
                    self.check_each)

    def _idle(self, source: Policy | torch.Tensor, k: Any, x: Components, done: torch.Tensor | bool
              ) -> tuple[Components, torch.Tensor, torch.Tensor | bool, torch.Tensor, torch.Tensor]:
        """The step once every trajectory is done: the state kept, no reward, the control the :class:`Step` records."""
        held, u = self.controls(source, k, x)
        return x, self.like.new_zeros(self.batch), done, held, u


@functools.cache
def _eventless(cls: type[OdeProblem[Any]]) -> type[OdeProblem[Any]]:
    """``cls`` without its event: the plain step of :class:`LocatedStep`."""
    return type(cls.__name__, (cls,), {"event": lambda self, x, params, ns: None, "__module__": cls.__module__,
                                       "__doc__": f"{cls.__name__} stepped without locating its event."})


def _without_event(problem: Problem[Any]) -> Problem[Any]:
    """A copy of ``problem`` (the same constants) whose :meth:`~diffenvs.core.problem.OdeProblem.event` is ``None``."""
    if not isinstance(problem, OdeProblem):
        raise TypeError(f"only an OdeProblem has an event to locate, got {type(problem).__name__}")
    plain = object.__new__(_eventless(type(problem)))
    plain.__dict__.update(problem.__dict__)
    return plain


def located(step: Step, x: Components) -> Step:
    """``step``, or a :class:`LocatedStep` where its problem has an event to locate (the eager loop's body)."""
    problem = step.problem
    if not isinstance(problem, OdeProblem) or problem.event(x, step.params, TORCH) is None:
        return step
    return LocatedStep(problem, step.params, step.control, step.integrate, step.batch, step.like, step.check_each)


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
    if check:  # the episode's start, as the faces check a given start state
        check_start_states(problem, "x0" if episode_start is None else "episode_start",
                           x0 if episode_start is None else episode_start)
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
    body = located(step, x) if isinstance(solver, RK4) else step  # torchdiffeq's solvers: located every step
    if isinstance(solver, RK4) and solver.compile:
        trajectory, raw = compiled_rollout(step, policy, x, start, states0, steps, noise, solver.chunk, first_step)
    elif isinstance(solver, RK4) and solver.reuse_compiled and body is step:
        # compiled where cached, else eagerly; not where an event is to be located: the chunks' eager fall-back
        # would locate it in every step
        trajectory, raw = compiled_rollout(step, policy, x, start, states0, steps, noise, solver.chunk, first_step,
                                           cached_only=True)
    else:
        trajectory, raw = loop(body, policy, x, start, states0, steps, noise, first_step)
    if checked and isinstance(solver, RK4):  # once, after the loop: one synchronisation for the rollout
        check_policy_outputs(raw, trajectory.states[:-1])
    return trajectory
