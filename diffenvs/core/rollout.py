r"""The gradient path: a batched, differentiable torch rollout of any definition.

``rollout(problem, policy, x0)`` integrates a batch of trajectories and returns states,
controls and rewards with autograd, differentiable with respect to the policy's parameters,
the initial state ``x0`` and tensor fields of ``params``. Two control modes:

* ``control="sampled"``: the control :math:`u_k = \pi(o(t_k, x_k))` is held over each step,
  exactly what the Gymnasium and vector faces do (the rollout agrees with ``env.step``);
* ``control="feedback"``: :math:`u(t) = \pi(o(t, x(t)))` is evaluated inside the ODE
  right-hand side (continuous-time neural-ODE control).

Solvers are small objects: :class:`RK4` (the faces' own fixed step; fast, works under
``torch.func``), :class:`Adaptive` (torchdiffeq ``odeint``, e.g. dopri5 with rtol/atol) and
:class:`Adjoint` (torchdiffeq ``odeint_adjoint``: gradients by the adjoint ODE, memory free
of solver stages and network activations). Each step is integrated on a rescaled clock
:math:`s \in [0, 1]`, :math:`t = t_k + s h`, so a batch with per-trajectory step lengths
(event location) shares one solver call.

One case skips the loop over steps: ``control="feedback"`` with :class:`Adjoint` on an
:class:`~diffenvs.core.problem.OdeProblem` that declares
:attr:`~diffenvs.core.problem.OdeProblem.whole_horizon_solve` (no event, the standard
reward; and without process noise) is a single ``odeint_adjoint`` solve over the whole
horizon, sampled on the step grid
(:func:`_adjoint_feedback_rollout`), so the memory kept for backward is the grid of states,
flat in everything but the number of steps.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq

from diffenvs.core.numerics import TORCH, Components, Integrator, rk4_step, stack
from diffenvs.core.problem import Feedback, Held, OdeProblem, Problem, check_integer
from diffenvs.core.transition import horizon_flags, transition

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
    """

    compile: bool = False
    chunk: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be True or False, got {self.compile!r}")
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


@dataclass
class Trajectory:
    """A batch of trajectories (time first).

    ``states`` ``(steps + 1, batch, n)`` physical states, ``controls`` ``(steps, batch, m)``
    physical controls held over each step, clipped to the bounds (for ``"feedback"`` the control at the step's
    start, recorded without gradient), ``rewards`` ``(steps, batch)``, ``done`` ``(steps + 1, batch)``: the episode had
    ended by then (states are frozen and rewards zero afterwards), ``times`` ``(steps + 1,)``.
    """

    states: torch.Tensor
    controls: torch.Tensor
    rewards: torch.Tensor
    done: torch.Tensor
    times: torch.Tensor

    @property
    def returns(self) -> torch.Tensor:
        """Sum of rewards per trajectory, shape ``(batch,)``."""
        return self.rewards.sum(0)

    @property
    def costs(self) -> torch.Tensor:
        """Minus the returns: the objective a controller minimises, shape ``(batch,)``."""
        return -self.returns


def _odeint_integrator(solver: Adaptive, leaves: list[torch.Tensor]) -> Integrator:
    """One step of torchdiffeq on the clock ``s in [0, 1]``.

    The held control and the step length ride in the ODE state with zero derivative, so
    the adjoint returns their gradients through its state; ``leaves`` (policy and physical
    parameters) are the adjoint's parameters.
    """
    adjoint = isinstance(solver, Adjoint)

    def integrate(f: Callable, t: Any, z: Components, h: Any, held: Components | None) -> Components:
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
        options = dict(rtol=solver.rtol, atol=solver.atol, method=solver.method)
        if adjoint:
            out = torchdiffeq.odeint_adjoint(rhs, packed, clock, adjoint_params=tuple(leaves), **options)
        else:
            out = torchdiffeq.odeint(rhs, packed, clock, **options)
        return out[-1].unbind(-1)[:n]

    return integrate


def _adjoint_feedback_rollout(problem: OdeProblem, policy: torch.nn.Module, observe: Callable[[Any, Components], torch.Tensor],
                              clip: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, start: Components, steps: int,
                              params: Any, solver: Adjoint, leaves: list[torch.Tensor]) -> tuple[Trajectory, torch.Tensor]:
    r"""A feedback rollout as one ``odeint_adjoint`` solve over the whole horizon.

    The augmented state :math:`z = (x, c)` follows

    .. math:: \dot x = f(t, x, u(t), p), \qquad \dot c = \ell_c(t, x, u(t), p), \qquad
              u(t) = \pi(o(t, x)), \qquad c(0) = 0

    (:math:`c` only when the problem has a running cost :math:`\ell_c`), solved once and
    returned on the grid :math:`t_k = k\,\Delta t`, :math:`k = 0 \dots K` with
    :math:`K = \min(\text{steps}, \text{max\_steps})` when the horizon terminates the episode
    (else :math:`K = \text{steps}`). The rewards are :meth:`OdeProblem.step_reward`, as in
    :meth:`OdeProblem.step`:

    .. math:: r_k = -[\Phi(x_{k+1}) - \Phi(x_k)] - [c(t_{k+1}) - c(t_k)]
                    - \mathbb{1}[k + 1 = \text{max\_steps}]\, \ell(x_{k+1}, x_0).

    Steps after the terminal step (``steps > max_steps``) keep the final state with zero
    reward, as the per-step loop does. torchdiffeq's ``odeint_adjoint`` runs its forward solve
    without a graph and saves only the grid solution (plus ``t`` and the parameters), so the
    memory kept for backward is :math:`(K + 1) \times \text{batch} \times (n + 1)` numbers
    (:math:`n` without :math:`c`) and a few grid-sized tensors of the reward, whatever the
    policy's size and the solver's steps. The controls are clipped to the bounds (``clip``), as on
    the per-step path; the policy's raw outputs at the steps' starts come back for the finiteness check.
    """
    n, batch, has_cost = problem.state_dim, x0.shape[0], problem.has_running_cost
    terminated = problem.horizon_ends == "terminated"
    solved = min(steps, problem.max_steps) if terminated else steps

    def rhs(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = z.unbind(-1)[:n]
        u = clip(policy(observe(t, x))).unbind(-1)
        derivative = problem.vector_field(t, x, u, params, TORCH)
        if has_cost:
            derivative = (*derivative, problem.running_cost(t, x, u, params, TORCH))
        return stack(derivative, like=z)

    z0 = stack([*start, 0.0 * start[0]] if has_cost else start, like=x0)
    grid = torch.arange(solved + 1, dtype=x0.dtype, device=x0.device) * problem.dt
    solution = torchdiffeq.odeint_adjoint(rhs, z0, grid, rtol=solver.rtol, atol=solver.atol, method=solver.method,
                                          adjoint_params=tuple(leaves))  # (solved + 1, batch, n [+ 1])
    xs = solution[..., :n].unbind(-1)  # components of shape (solved + 1, batch)

    x, x1 = tuple(a[:-1] for a in xs), tuple(a[1:] for a in xs)  # each step's start and end on the grid
    cost = solution[1:, :, n] - solution[:-1, :, n] if has_cost else None
    step_index = torch.arange(solved, device=x0.device).unsqueeze(-1)
    terminal_due, _ = horizon_flags(problem, step_index + 1 == problem.max_steps)
    rewards = problem.step_reward(x, x1, cost, start, terminal_due, params, TORCH)  # (solved, batch)
    rewards = rewards.expand(solved, batch)

    frozen = steps - solved  # steps after the episode's end: frozen state, zero reward
    states = stack(problem.state_to_physical(xs), like=x0)  # (solved + 1, batch, n)
    states = torch.cat([states, states[-1:].expand(frozen, -1, -1)])
    rewards = torch.cat([rewards, rewards.new_zeros(frozen, batch)])
    with torch.no_grad():  # the control at each step's start, recorded for inspection
        raw = torch.stack([policy(observe(k * problem.dt, solution[min(k, solved), :, :n].unbind(-1)))
                           for k in range(steps)])
        controls = clip(raw)
    ended = torch.arange(steps + 1, device=x0.device) >= problem.max_steps
    done = horizon_flags(problem, ended)[0].unsqueeze(-1).expand(-1, batch).contiguous()
    times = torch.arange(steps + 1, dtype=x0.dtype, device=x0.device) * problem.dt
    return Trajectory(states, controls, rewards, done, times), raw


def tensor_fields(params: Any) -> dict[str, torch.Tensor]:
    """The tensor fields of a dataclass of constants, by name (none for anything else)."""
    if not dataclasses.is_dataclass(params):
        return {}
    return {f.name: v for f in dataclasses.fields(params) if isinstance(v := getattr(params, f.name), torch.Tensor)}


def _checked_params(problem: Problem, params: Any) -> Any:
    """``params`` (default ``problem.params``) after the checks ``problem``'s constructor applies to its own.

    The definition's ``__post_init__`` runs on a copy of ``problem`` holding ``params``, so a
    constant given here meets exactly the checks it meets in the constructor (``pole_mass=-1``
    fails as ``Cartpole(params=...)`` does). Tensor fields, the constants being differentiated,
    are not checked (a check on a tensor's value would be a branch on it): the copy holds the
    problem's own, already checked, value of those fields.
    """
    own = problem.params
    if params is None or params is own:
        return own
    if dataclasses.is_dataclass(own) and not isinstance(params, type(own)):
        raise TypeError(f"params must be a {type(own).__name__} (the constants of {type(problem).__name__}), "
                        f"got {type(params).__name__}")
    checked = params
    if dataclasses.is_dataclass(params):
        tensors = {f.name: getattr(own, f.name) for f in dataclasses.fields(params)
                   if f.init and isinstance(getattr(params, f.name), torch.Tensor)}
        checked = dataclasses.replace(params, **tensors) if tensors else params
    probe = copy.copy(problem)
    object.__setattr__(probe, "params", checked)
    probe.__post_init__()
    return params


def _finite(value: torch.Tensor) -> torch.Tensor:
    """``torch.isfinite`` outside the autograd graph (on a tensor that requires grad it would record, and save, an ``abs``)."""
    return torch.isfinite(value.detach())


def _first_bad(finite: torch.Tensor) -> tuple[int, ...]:
    """The index of the first ``False`` of ``finite`` (row-major: the earliest step, then the lowest trajectory)."""
    return tuple(int(i) for i in torch.nonzero(~finite)[0])


def _checked_tensor(name: str, value: Any, shape: tuple[int, ...], x0: torch.Tensor, check: bool, axes: str) -> None:
    """Raise unless ``value`` is a tensor of ``shape`` and ``x0``'s dtype and device, finite when ``check``.

    ``axes`` names the leading axes of ``value`` for the message (e.g. ``"step, trajectory"``).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    if value.dtype != x0.dtype or value.device != x0.device:
        raise TypeError(f"{name} must have x0's dtype and device ({x0.dtype}, {x0.device}), "
                        f"got ({value.dtype}, {value.device})")
    if check and not bool(_finite(value).all()):
        index = _first_bad(_finite(value).flatten(len(axes.split(", "))).all(-1))
        raise ValueError(f"{name} must be finite, got {value[index].tolist()} at ({axes}) = {index}; "
                         "check=False skips this check")


def _policy_output(u: Any, step: Any, batch: int, m: int, x0: torch.Tensor) -> torch.Tensor:
    """A callable policy's output, checked: a tensor ``(batch, m)`` of ``x0``'s dtype and device."""
    at = f" at step {step}" if isinstance(step, int) else ""
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"policy must return a torch.Tensor of controls of shape ({batch}, {m}), got "
                        f"{type(u).__name__}{at}")
    if tuple(u.shape) != (batch, m):
        raise ValueError(f"policy must return controls of shape (batch, control_dim) = ({batch}, {m}), "
                         f"got {tuple(u.shape)}{at}")
    if u.dtype != x0.dtype or u.device != x0.device:
        raise TypeError(f"policy must return controls of x0's dtype and device ({x0.dtype}, {x0.device}), "
                        f"got ({u.dtype}, {u.device}){at}")
    return u


def _check_policy_outputs(raw: torch.Tensor, states: torch.Tensor, first_step: int = 0) -> None:
    """Raise if the policy returned a non-finite control ``raw`` ``(steps, batch, m)`` from a finite state.

    ``states`` ``(steps, batch, n)`` are the states the controls were computed from, at steps
    ``first_step, first_step + 1, ...``. A state that had already diverged is not the policy's
    fault, and not an error here: the trajectory holds the non-finite values, as the faces'
    finite-state check would truncate there. One synchronisation per call when all is finite.
    """
    finite = _finite(raw)
    if bool(finite.all()):  # the common case: one reduction, the states untouched
        return
    blamed = ~finite.all(-1) & _finite(states).all(-1)
    if bool(blamed.any()):
        step, row = _first_bad(~blamed)
        raise ValueError(f"policy must return finite controls, got {raw[step, row].tolist()} at step {first_step + step} "
                         f"(trajectory {row}) from the finite state {states[step, row].tolist()}; "
                         "check=False skips this check")


def _checked_arguments(problem: Problem, policy: Any, x0: Any, steps: Any, control: Any, solver: Any,
                       noise: Any, check: bool) -> Any:
    """Validate :func:`rollout`'s arguments once; the policy comes back (a tensor of controls broadcast over the batch)."""
    if control not in ("sampled", "feedback"):
        raise ValueError(f"control must be 'sampled' or 'feedback', got {control!r}")
    if not isinstance(solver, (RK4, Adaptive)):
        raise TypeError(f"solver must be RK4(), Adaptive(...) or Adjoint(...), got {solver!r}")
    if not isinstance(check, bool):
        raise TypeError(f"check must be True or False, got {check!r}")
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2 or x0.shape[-1] != problem.state_dim:
        raise ValueError(f"x0 must be a tensor of shape (batch, {problem.state_dim}), got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating-point tensor, got dtype {x0.dtype}")
    if check and not bool(_finite(x0).all()):
        (row,) = _first_bad(_finite(x0).all(-1))
        raise ValueError(f"x0 must be finite, got {x0[row].tolist()} in row {row}; check=False skips this check")
    check_integer("steps", steps)
    batch, m = x0.shape[0], problem.control_dim
    if isinstance(policy, torch.Tensor):
        if control == "feedback":
            raise ValueError("control='feedback' needs a callable policy, not a tensor of controls")
        if policy.dim() == 2:
            policy = policy.unsqueeze(1).expand(-1, batch, -1)
        if tuple(policy.shape) != (steps, batch, m):
            raise ValueError(f"policy as a tensor of controls must have shape ({steps}, {batch}, {m}), got {tuple(policy.shape)}")
        _checked_tensor("policy as a tensor of controls", policy, (steps, batch, m), x0, check, "step, trajectory")
    elif not callable(policy):
        raise TypeError(f"policy must be callable or a tensor of controls, got {type(policy).__name__}")
    if noise is not None:
        if not problem.step_noise:
            raise ValueError(f"noise must be None: {type(problem).__name__} has no process noise (step_noise = 0)")
        _checked_tensor("noise", noise, (steps, batch, problem.step_noise), x0, check, "step, trajectory")
    if not isinstance(problem, OdeProblem) and (control == "feedback" or not isinstance(solver, RK4)):
        raise ValueError(f"{type(problem).__name__} is a discrete-time map: it takes control='sampled' and solver=RK4()")
    if isinstance(solver, Adjoint) and control == "feedback" and not isinstance(policy, torch.nn.Module):
        raise TypeError("the adjoint solver with control='feedback' needs the policy to be a torch.nn.Module "
                        "(its parameters are the adjoint's parameters)")
    return policy


def time_limited(problem: Problem, steps: int) -> Problem:
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
    return dataclasses.replace(problem, max_steps=steps)


def rollout(
    problem: Problem,
    policy: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor,
    x0: torch.Tensor,
    *,
    steps: int | None = None,
    params: Any = None,
    control: str = "sampled",
    solver: Solver = RK4(),
    noise: torch.Tensor | None = None,
    check: bool = True,
    first_step: int = 0,
    episode_start: torch.Tensor | None = None,
) -> Trajectory:
    r"""Roll a batch of trajectories out of ``problem`` under ``policy``.

    Controls outside the problem's control set are moved into it by ``problem.clip_control``:
    clamped component by component to ``[problem.control_low, problem.control_high]`` (for
    ``LinearSysID``, then projected onto the ball :math:`\|u\| \le \gamma`), what ``env.step`` does to an
    action outside ``[-1, 1]``; so the rollout of an out-of-bounds policy agrees with the
    Gymnasium and vector faces. A clipped component has zero gradient with respect to the
    policy's output (one inside, and at, the bounds). ``Trajectory.controls`` holds the clipped controls.

    Args:
        problem: the definition (e.g. ``diffenvs.envs.cartpole.Cartpole()``, or
            ``gymnasium.make(id).unwrapped.problem``).
        policy: a callable from observations ``(batch, obs_dim)`` to physical controls
            ``(batch, m)`` of ``x0``'s dtype and device (any torch module), or an open-loop
            tensor of controls ``(steps, batch, m)`` (or ``(steps, m)``, shared by the batch).
        x0: physical start states ``(batch, n)``; its dtype and device are used throughout.
        steps: number of steps (default ``problem.max_steps``). The terminal cost is paid at
            step ``problem.max_steps`` as on the Gymnasium face; for a shorter objective build
            the problem with a shorter horizon.
        params: physical constants (default ``problem.params``), checked as the problem's
            constructor checks its own (tensor fields excepted); tensor fields get gradients.
        control: ``"sampled"`` (held over each step, as ``env.step``) or ``"feedback"``.
        solver: :class:`RK4` (default), :class:`Adaptive` or :class:`Adjoint`.
        noise: process noise ``(steps, batch, problem.step_noise)`` for stochastic
            definitions (reparametrisation: fixed draws); ``None`` means none.
        check: whether to check the values of ``x0``, ``noise``, a tensor of controls and every
            control the policy returns at a step's start for finiteness (``ValueError`` naming
            the argument, and the step for the policy). The policy's controls are checked
            once, after the loop (one synchronisation), and only where the state they came
            from is finite: a trajectory that diverges by itself is not an error here.
            (:class:`Adaptive` and :class:`Adjoint` check each step's control before integrating
            it, as their step-size control synchronises anyway; the whole-horizon adjoint solve
            checks the first control only, before the solve.)
            ``check=False`` skips these value checks (inside compiled or training loops);
            types, shapes, dtypes and ``params`` are checked either way.
        first_step: the episode's step at which ``x0`` stands (default 0, the start): the rollout
            covers steps ``first_step ... first_step + steps - 1`` of the episode, on its clock
            (observed time, the terminal cost at ``max_steps``), e.g. a window of a longer episode.
        episode_start: the physical state ``(batch, n)`` the episode started from, for costs that
            depend on it (default ``x0``); with ``first_step > 0``, pass the episode's own start.
    """
    steps = problem.max_steps if steps is None else steps
    policy = _checked_arguments(problem, policy, x0, steps, control, solver, noise, check)
    check_integer("first_step", first_step, least=0)
    if episode_start is not None:
        _checked_tensor("episode_start", episode_start, tuple(x0.shape), x0, check, "trajectory")
    batch, m, open_loop = x0.shape[0], problem.control_dim, isinstance(policy, torch.Tensor)

    params = problem.params_like(_checked_params(problem, params), x0)
    policy_parameters = list(policy.parameters()) if isinstance(policy, torch.nn.Module) else []
    leaves = [p for p in (*policy_parameters, *tensor_fields(params).values()) if p.requires_grad]
    if isinstance(solver, Adjoint) and any(not p.is_leaf for p in leaves):
        raise ValueError("with the Adjoint solver, tensors in params and the policy's parameters must be leaf tensors")
    integrate = rk4_step if isinstance(solver, RK4) else _odeint_integrator(solver, leaves)
    checked = check and not open_loop  # a tensor of controls was checked whole, before the loop
    step = Step(problem, params, control, integrate, batch, x0, check_each=checked and not isinstance(solver, RK4))
    x = problem.state_from_physical(x0.unbind(-1), params, TORCH)
    start = x if episode_start is None else problem.state_from_physical(episode_start.unbind(-1), params, TORCH)
    whole = first_step == 0 and episode_start is None and noise is None and problem.whole_horizon_solve
    if control == "feedback" and isinstance(solver, Adjoint) and whole:
        with torch.no_grad():  # the policy's output checked before the solve calls it
            first = _policy_output(policy(step.observe(0.0, start)), 0, batch, m, x0)
        if check:
            _check_policy_outputs(first[None], x0[None])
        trajectory, raw = _adjoint_feedback_rollout(problem, policy, step.observe, problem.clip_control, x0, start, steps,
                                                    params, solver, leaves)
        if check:
            _check_policy_outputs(raw, trajectory.states[:-1])
        return trajectory

    after = checked and isinstance(solver, RK4)  # once, after the loop: one synchronisation for the rollout
    states0 = stack(problem.state_to_physical(x), like=x0)
    if isinstance(solver, RK4) and solver.compile:
        from diffenvs.core.fused import compiled_rollout  # torch.compile's machinery loads only when asked for

        trajectory, raw = compiled_rollout(step, policy, x, start, states0, steps, noise, solver.chunk, first_step)
    else:
        trajectory, raw = _loop(step, policy, x, start, states0, steps, noise, first_step)
    if after:
        _check_policy_outputs(raw, trajectory.states[:-1])
    return trajectory


@dataclass(frozen=True)
class Step:
    """One step of every trajectory of a rollout: the loop's body, the same for the eager loop and the compiled chunks.

    ``problem``, ``params`` (tensors of the rollout's dtype), ``control`` (``"sampled"`` or
    ``"feedback"``), the one-step integrator ``integrate``, the ``batch`` size, ``like`` (a tensor of the
    rollout's dtype and device) and ``check_each`` (check each step's control before integrating it).
    """

    problem: Problem
    params: Any
    control: str
    integrate: Integrator
    batch: int
    like: torch.Tensor
    check_each: bool = False

    def observe(self, t: Any, x: Components) -> torch.Tensor:
        """The observation ``(batch, obs_dim)`` at time ``t`` of the internal state ``x``."""
        return stack(self.problem.observation(t, x, self.params, TORCH), like=self.like)

    def __call__(self, policy: Callable[[torch.Tensor], torch.Tensor], k: Any, x: Components, done: torch.Tensor | bool,
                 u: torch.Tensor | None, noise: torch.Tensor | None, start: Components
                 ) -> tuple[Components, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step ``k`` (an int, or a 0-d tensor in a compiled chunk) of every trajectory from ``x``.

        ``u`` is the held control (``None``: from ``policy``), ``noise`` the step's draws
        ``(batch, step_noise)`` or ``None``, ``start`` the episode's internal start state.
        Returns the next state, the reward, the done flags, the clipped control held (for
        ``"feedback"``, the one at the step's start) and the control before clipping. A
        trajectory already done keeps its state and earns nothing, as on the faces. ``done`` may
        be a Python bool, the same for every trajectory (no event yet, an int step index): then
        nothing is masked, and the flags that come back are a bool as long as they can be.
        """
        problem, batch, m = self.problem, self.batch, self.problem.control_dim
        t = k * problem.dt

        def feedback(t: Any, x: Components) -> Components:
            return problem.clip_control(policy(self.observe(t, x))).unbind(-1)

        if u is None and self.control == "feedback":  # recorded for inspection only: the dynamics evaluate the policy
            with torch.no_grad():
                u = _policy_output(policy(self.observe(t, x)), k, batch, m, self.like)
        elif u is None:
            u = _policy_output(policy(self.observe(t, x)), k, batch, m, self.like)
        if self.check_each:
            _check_policy_outputs(u[None], stack(problem.state_to_physical(x), like=self.like)[None], k)
        held = problem.clip_control(u)
        step_control = Feedback(feedback) if self.control == "feedback" else Held(held.unbind(-1))
        out = transition(problem, k, x, step_control, x0=start, params=self.params, ns=TORCH,
                         noise=None if noise is None else noise.unbind(-1), integrate=self.integrate, check_finite=False)
        # the episode ends where it terminates or reaches its time limit (steps past it are frozen, as on the faces)
        if isinstance(done, bool):  # every trajectory alike: no mask to apply (the eager loop's common case)
            x1, reward = (x, torch.zeros_like(out.reward)) if done else (out.x, out.reward)
        else:
            x1 = tuple(torch.where(done.reshape((-1,) + (1,) * (a.dim() - 1)), a, b) for a, b in zip(x, out.x))
            reward = torch.where(done, torch.zeros_like(out.reward), out.reward)
        return x1, reward, done | out.terminated | out.truncated, held, u


def _loop(step: Step, policy: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor, x: Components, start: Components,
          states0: torch.Tensor, steps: int, noise: torch.Tensor | None, first_step: int = 0,
          done: torch.Tensor | bool = False) -> tuple[Trajectory, torch.Tensor]:
    """The eager rollout: ``steps`` calls of ``step`` from ``x`` at ``first_step`` of the episode begun at ``start``.

    ``done`` holds the trajectories already ended (``False``, a bool while every trajectory is
    alike, needs no masks: see :class:`Step`). Returns the trajectory and the controls before clipping.
    """
    open_loop, like = isinstance(policy, torch.Tensor), step.like
    states, controls, raw, rewards, dones = [states0], [], [], [], [done]
    for j in range(steps):
        x, reward, done, u, unclipped = step(policy, first_step + j, x, done, policy[j] if open_loop else None,
                                             None if noise is None else noise[j], start)
        rewards.append(reward.expand(step.batch))
        states.append(stack(step.problem.state_to_physical(x), like=like))
        controls.append(u)
        raw.append(unclipped)
        dones.append(done)
    dones = [torch.full((step.batch,), d, dtype=torch.bool, device=like.device) if isinstance(d, bool) else d for d in dones]
    times = (first_step + torch.arange(steps + 1, dtype=like.dtype, device=like.device)) * step.problem.dt
    trajectory = Trajectory(torch.stack(states), torch.stack(controls), torch.stack(rewards), torch.stack(dones), times)
    return trajectory, torch.stack(raw)
