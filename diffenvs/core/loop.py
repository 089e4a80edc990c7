"""The gradient path's loop body and its eager loop, shared by the dispatcher and the compiled chunks.

:class:`Step` is one step of every trajectory of a rollout (policy, clip, the one
:func:`~diffenvs.core.transition.transition`, done masks); :func:`loop` calls it step by step
into a :class:`Trajectory`. :func:`~diffenvs.core.rollout.rollout` runs it eagerly and
:mod:`diffenvs.core.fused` traces the same body into compiled chunks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from diffenvs.core.checks import Policy, check_policy_outputs, policy_output
from diffenvs.core.numerics import TORCH, Components, Integrator, stack
from diffenvs.core.problem import Control, Feedback, Held, Problem
from diffenvs.core.transition import transition


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


@dataclass(frozen=True)
class Step:
    """One step of every trajectory of a rollout: the loop's body, the same for the eager loop and the compiled chunks.

    ``problem``, ``params`` (tensors of the rollout's dtype), ``control`` (``"sampled"`` or
    ``"feedback"``), the one-step integrator ``integrate``, the ``batch`` size, ``like`` (a tensor of the
    rollout's dtype and device) and ``check_each`` (check each step's control before integrating it).
    """

    problem: Problem[Any]
    params: Any
    control: str
    integrate: Integrator
    batch: int
    like: torch.Tensor
    check_each: bool = False

    def observe(self, t: Any, x: Components) -> torch.Tensor:
        """The observation ``(batch, obs_dim)`` at time ``t`` of the internal state ``x``."""
        return stack(self.problem.observation(t, x, self.params, TORCH), like=self.like)

    def physical(self, x: Components) -> torch.Tensor:
        """The physical states ``(batch, n)`` of the internal state ``x``."""
        return stack(self.problem.state_to_physical(x), like=self.like)

    def __call__(self, source: Policy | torch.Tensor, k: Any, x: Components, done: torch.Tensor | bool,
                 noise: torch.Tensor | None, start: Components
                 ) -> tuple[Components, torch.Tensor, torch.Tensor | bool, torch.Tensor, torch.Tensor]:
        """Step ``k`` (an int, or a 0-d tensor in a compiled chunk) of every trajectory from ``x``.

        ``source`` is the policy, or the step's open-loop controls ``(batch, m)``; ``noise`` the step's
        draws ``(batch, step_noise)`` or ``None``, ``start`` the episode's internal start state.
        Returns the next state, the reward, the done flags, the clipped control held (for
        ``"feedback"``, the one at the step's start) and the control before clipping. A
        trajectory already done keeps its state and earns nothing, as on the faces. ``done`` may
        be a Python bool, the same for every trajectory (no event yet, an int step index): then
        nothing is masked, and the flags that come back are a bool as long as they can be.
        """
        problem = self.problem
        held, u = self.controls(source, k, x)
        out = transition(problem, k, x, self._control(source, held), x0=start, params=self.params, ns=TORCH,
                         noise=None if noise is None else noise.unbind(-1), integrate=self.integrate, check_finite=False)
        # the episode ends where it terminates or reaches its time limit (steps past it are frozen, as on the faces)
        if isinstance(done, bool):  # every trajectory alike: no mask to apply (the eager loop's common case)
            x1, reward = (x, torch.zeros_like(out.reward)) if done else (out.x, out.reward)
        else:
            x1 = tuple(torch.where(done.reshape((-1,) + (1,) * (a.dim() - 1)), a, b) for a, b in zip(x, out.x))
            reward = torch.where(done, torch.zeros_like(out.reward), out.reward)
        return x1, reward, done | out.terminated | out.truncated, held, u

    def controls(self, source: Policy | torch.Tensor, k: Any, x: Components) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's control held (clipped into the control set) and the control before clipping, ``(batch, m)``:
        ``source``'s open-loop controls, or the policy at the step's start (with ``"feedback"``, recorded for
        inspection only, without a graph: the dynamics evaluate the policy), checked where ``check_each``."""
        if isinstance(source, torch.Tensor):
            u = source
        else:
            with torch.no_grad() if self.control == "feedback" else contextlib.nullcontext():
                u = policy_output(source(self.observe(k * self.problem.dt, x)), k, self.batch, self.problem.control_dim,
                                  self.like)
        if self.check_each:
            check_policy_outputs(u[None], self.physical(x)[None], k)
        return self.problem.clip_control(u), u

    def _control(self, source: Policy | torch.Tensor, held: torch.Tensor) -> Control:
        """The step's control: ``held`` over the step, or the policy inside the ODE (``"feedback"``)."""
        if self.control != "feedback" or isinstance(source, torch.Tensor):
            return Held(held.unbind(-1))
        problem = self.problem

        def feedback(t: Any, x: Components) -> Components:
            return tuple(problem.clip_control(source(self.observe(t, x))).unbind(-1))

        return Feedback(feedback)


def loop(step: Step, policy: Policy | torch.Tensor, x: Components, start: Components, states0: torch.Tensor,
         steps: int, noise: torch.Tensor | None, first_step: int = 0,
         done: torch.Tensor | bool = False) -> tuple[Trajectory, torch.Tensor]:
    """The eager rollout: ``steps`` calls of ``step`` from ``x`` at ``first_step`` of the episode begun at ``start``.

    ``policy`` is a callable or the open-loop controls ``(steps, batch, m)``; ``done`` holds the
    trajectories already ended (``False``, a bool while every trajectory is alike, needs no masks:
    see :class:`Step`). Returns the trajectory and the controls before clipping.
    """
    like = step.like
    step = dataclasses.replace(step, params=numbers_as_tensors(step.params, like))
    physical: list[Components] = []
    controls, raw, rewards = [], [], []
    dones: list[torch.Tensor | bool] = [done]
    for j in range(steps):
        source = policy[j] if isinstance(policy, torch.Tensor) else policy
        x, reward, done, u, unclipped = step(source, first_step + j, x, done, None if noise is None else noise[j], start)
        rewards.append(reward if reward.shape == (step.batch,) else reward.expand(step.batch))
        physical.append(step.problem.state_to_physical(x))
        controls.append(u)
        raw.append(unclipped)
        dones.append(done)
    constant = {d: torch.full((step.batch,), d, dtype=torch.bool, device=like.device) for d in (False, True)}
    flags = [constant[d] if isinstance(d, bool) else d for d in dones]
    times = (first_step + torch.arange(steps + 1, dtype=like.dtype, device=like.device)) * step.problem.dt
    states = _stack_states(states0, physical, step)
    trajectory = Trajectory(states, torch.stack(controls), torch.stack(rewards), torch.stack(flags), times)
    return trajectory, torch.stack(raw)


def numbers_as_tensors(params: Any, like: torch.Tensor) -> Any:
    """``params`` (a dataclass) with its float fields as 0-d tensors of ``like``'s floating dtype and device.

    An eager step multiplies by each constant several times; a Python float is converted to the
    tensor's dtype in each product's forward and again in its backward (``aten::to``, about 80
    dispatches of a float32 cartpole step), a 0-d tensor of that dtype is not. The values are those
    the conversions would give; integers and flags stay numbers (a dimension, a choice).
    """
    if not (dataclasses.is_dataclass(params) and not isinstance(params, type) and like.is_floating_point()):
        return params
    changes = {f.name: like.new_tensor(getattr(params, f.name)) for f in dataclasses.fields(params)
               if type(getattr(params, f.name)) is float}
    return dataclasses.replace(params, **changes) if changes else params


def _stack_states(states0: torch.Tensor, physical: list[Components], step: Step) -> torch.Tensor:
    """The states ``(steps + 1, batch, n)``: ``states0`` and the physical components of each step, stacked once per
    component over the steps where every component is a tensor of shape ``(batch,)`` (one operation per component,
    not one per step), else step by step."""
    shape = (step.batch,)
    if physical and all(isinstance(c, torch.Tensor) and c.shape == shape for x in physical for c in x):
        later = torch.stack([torch.stack(column) for column in zip(*physical)], dim=-1)
        return torch.cat([states0[None], later])
    return torch.stack([states0, *(stack(x, like=step.like) for x in physical)])
