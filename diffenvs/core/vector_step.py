"""The vector face's step as a pure function of an immutable batched state.

:class:`VectorState` holds everything a batch of environments is (internal states, the episodes'
starts, step indices, the last observation, the counter-based random keys and episode counters,
which episodes have ended); nothing in it is modified in place, a step or a reset returns a new
one. :func:`batched_step` is everything per step that is arithmetic on the batch: the transition,
the observation (written once, contiguously), the reward, the flags and, for the environments whose
episode ended at the previous step, the next-step autoreset with its random draws (counter-based
integer arithmetic, :func:`~diffenvs.core.random.uniform_tensor`, the same numbers as the numpy
draws). :class:`CompiledStep` is the same function fused into one kernel per variant (with or
without a restart, with or without noise), traced and compiled once
(:func:`~diffenvs.core.compiler.compile_tensor_function`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch

from diffenvs.core import random
from diffenvs.core.compiler import Compiled, compile_tensor_function
from diffenvs.core.gym_face import initial_draws
from diffenvs.core.numerics import TORCH, Integrator, rk4_components, rk4_step, stack
from diffenvs.core.problem import Held, Problem
from diffenvs.core.transition import transition
from diffenvs.core.validation import as_integer, is_integer

Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class VectorState:
    """A batch of environments between two steps (immutable: steps and resets return a new one).

    ``x`` and ``x0`` are the internal state's and the episodes' start states' components, one row
    per environment; ``steps`` the step indices (int32); ``observation`` the last observation
    ``(num_envs, obs)`` float32 (returned again for a non-finite state); ``keys`` and ``episodes``
    the counter-based draws' keys and episode counters (uint64); ``ended`` the environments whose
    episode has ended and that have not restarted yet.
    """

    x: Tensors
    x0: Tensors
    steps: torch.Tensor
    observation: torch.Tensor
    keys: np.ndarray
    episodes: np.ndarray
    ended: np.ndarray


class StepOutput(NamedTuple):
    """What :func:`batched_step` returns: the next state, the episodes' start states (``None`` when none restarted),
    the step indices, the observation ``(num_envs, obs)`` float32, the reward, the flags ``(terminated, truncated,
    finite)`` as 0/1 rows of one array (a vectorised store; a bool array is stored element by element), whether
    every action was finite, and ``status``: two bools, every action finite and any flag raised (an episode ended or a
    state left the representable range), read in one conversion, so that a step where nothing happened needs no look
    at the flags."""

    x: Tensors
    x0: Tensors | None
    steps: torch.Tensor
    observation: torch.Tensor
    reward: torch.Tensor
    flags: torch.Tensor
    actions_finite: torch.Tensor
    status: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """The constants of a vector face's arithmetic: its ``problem``, the ``params`` as tensors of ``dtype`` on
    ``device``, the rewards' dtype (float64 for numpy arrays, as Gymnasium's vector envs; the env's dtype for
    torch arrays), and the one-step integrator (the faces' RK4; :func:`~diffenvs.core.numerics.rk4_components` where
    the step is compiled)."""

    problem: Problem[Any]
    params: Any
    dtype: torch.dtype
    device: torch.device
    reward_dtype: torch.dtype
    integrate: Integrator = rk4_step

    def tensor(self, array: Any) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def rows(self, x: tuple[Any, ...], n: int) -> Tensors:
        """State components as tensors with ``n`` rows (a constant component is broadcast)."""
        return tuple(self.tensor(c).expand(n) if not isinstance(c, torch.Tensor) or c.dim() == 0 else c for c in x)

    def observe(self, steps: torch.Tensor, x: Tensors) -> torch.Tensor:
        """The observations ``(rows, obs)`` at the step indices ``steps`` (in the state's dtype)."""
        t = steps.to(self.dtype) * self.problem.dt
        return stack(self.problem.observation(t, x, self.params, TORCH), like=t)

    def initial(self, keys: np.ndarray, episodes: np.ndarray) -> Tensors:
        """The start states drawn from the counters ``keys`` and ``episodes`` (numpy draws, one row each)."""
        draws = self.tensor(initial_draws(self.problem, keys, episodes))
        return self.rows(self.problem.initial_state(draws, self.params, TORCH), len(keys))

    def first(self, state: VectorState, fresh: Tensors) -> VectorState:
        """A whole batch at the start states ``fresh``, step 0, with ``state``'s counters."""
        steps = torch.zeros(len(state.keys), dtype=torch.int32, device=self.device)
        return dataclasses.replace(state, x=fresh, x0=fresh, steps=steps,
                                   observation=self.observe(steps, fresh).to(torch.float32),
                                   ended=np.zeros(len(state.keys), dtype=bool))

    def start(self, state: VectorState, indices: np.ndarray, fresh: Tensors) -> tuple[VectorState, torch.Tensor]:
        """``state`` with the environments ``indices`` at the start states ``fresh``, step 0; and their first
        observations, float32."""
        index = torch.as_tensor(indices, device=self.device)
        steps = state.steps.index_fill(0, index, 0)
        first = self.observe(steps[index], fresh).to(torch.float32)
        ended = state.ended.copy()
        ended[indices] = False
        return dataclasses.replace(
            state, x=tuple(c.index_copy(0, index, f) for c, f in zip(state.x, fresh)),
            x0=tuple(c.index_copy(0, index, f) for c, f in zip(state.x0, fresh)), steps=steps,
            observation=state.observation.index_copy(0, index, first), ended=ended), first

    def next_episode(self, state: VectorState, indices: np.ndarray) -> tuple[VectorState, torch.Tensor]:
        """``state`` with the environments ``indices`` at the start of their next episode (their counters advance by
        one, as a single environment's reset without a seed); and their first observations."""
        episodes = state.episodes.copy()
        episodes[indices] += np.uint64(1)
        state = dataclasses.replace(state, episodes=episodes)
        return self.start(state, indices, self.initial(state.keys[indices], episodes[indices]))


def _rows(mask: torch.Tensor, new: Any, old: torch.Tensor) -> torch.Tensor:
    """``new`` in the rows where ``mask`` is true, else ``old`` (``new`` may be a constant; ``mask`` has one entry per row)."""
    mask = mask.reshape(mask.shape + (1,) * (old.dim() - mask.dim()))
    return torch.where(mask, torch.as_tensor(new, dtype=old.dtype, device=old.device), old)


def batched_step(batch: Batch, steps: torch.Tensor, x: Tensors, x0: Tensors, action: torch.Tensor,
                 noise: torch.Tensor | None, restart: torch.Tensor | None, keys: torch.Tensor | None,
                 episodes: torch.Tensor | None) -> StepOutput:
    """One step of every environment of the batch, pure arithmetic on tensors (one kernel when compiled).

    ``steps`` is the step index (int32), turned into the state's dtype so the time ``k * dt`` is
    computed in the precision of the state, as the single environment computes it in float64.
    ``restart`` (or ``None``) marks the environments that restart in this step (the next-step
    autoreset): they start their next episode, drawn from their ``keys`` and ``episodes`` counters
    (int64 bit patterns, already advanced), and report their first observation, reward 0, no flag.
    """
    problem, params, dtype = batch.problem, batch.params, batch.dtype
    k = steps.to(dtype)
    control = Held(problem.control_from_action(action.to(dtype).unbind(-1), TORCH))
    step = transition(problem, k, x, control, x0=x0, params=params, ns=TORCH,
                      noise=None if noise is None else noise.unbind(-1), integrate=batch.integrate)
    x1, reward, observation = step.x, step.reward, step.observation or ()
    terminated, truncated, finite = step.terminated, step.truncated, step.finite
    steps1, x01 = steps + 1, None
    if restart is not None and keys is not None and episodes is not None:
        draws = random.uniform_tensor(keys, episodes, 0, problem.initial_draws[1]).to(dtype)
        fresh = problem.initial_state(draws, params, TORCH)
        first = problem.observation(torch.zeros_like(k), fresh, params, TORCH)
        x1 = tuple(_rows(restart, f, c) for f, c in zip(fresh, x1))
        x01 = tuple(_rows(restart, f, c) for f, c in zip(fresh, batch.rows(x0, len(k))))
        observation = tuple(_rows(restart, f, torch.as_tensor(o, dtype=k.dtype, device=k.device).expand_as(k))
                            for f, o in zip(first, observation))
        reward = _rows(restart, 0.0, reward)
        terminated, truncated, finite = terminated & ~restart, truncated & ~restart, finite | restart
        steps1 = _rows(restart, 0, steps1)
    flags = torch.stack([f.to(k.dtype) for f in (terminated, truncated, finite)])
    actions_finite = torch.isfinite(action).all()
    raised = (terminated | truncated | ~finite).any()
    return StepOutput(x1, x01, steps1, stack(observation, like=k).to(torch.float32), reward.to(batch.reward_dtype),
                      flags, actions_finite, torch.stack([actions_finite, raised]))


class Stepper(Protocol):
    """A step function of one batch: :func:`batched_step` with its batch bound, or :class:`CompiledStep`."""

    def __call__(self, steps: torch.Tensor, x: Tensors, x0: Tensors, action: torch.Tensor, noise: torch.Tensor | None,
                 restart: torch.Tensor | None, keys: torch.Tensor | None, episodes: torch.Tensor | None
                 ) -> StepOutput: ...


class CompiledStep:
    """:func:`batched_step` of one batch fused into one kernel per variant, compiled on the variant's first call.

    A variant is the structure of the call: the state's components, with or without noise, with or
    without a restart. Everything that is not a tensor input (the problem, its constants, the dtypes)
    is a constant of the compiled code; ``threads`` is the number of threads the code is generated
    for (``None``: torch's setting).
    """

    def __init__(self, batch: Batch, threads: int | None) -> None:
        self.batch = dataclasses.replace(batch, integrate=rk4_components)
        self.options = {} if threads is None else {"cpp.threads": threads}
        self._variants: dict[tuple[bool, bool], Compiled] = {}

    def __call__(self, steps: torch.Tensor, x: Tensors, x0: Tensors, action: torch.Tensor,
                 noise: torch.Tensor | None, restart: torch.Tensor | None, keys: torch.Tensor | None,
                 episodes: torch.Tensor | None) -> StepOutput:
        n = len(x)
        noisy, restarts = noise is not None, restart is not None
        optional = [t for t in (noise, restart, keys, episodes) if t is not None]
        inputs = [steps, *x, *x0, action, *optional]
        variant = (noisy, restarts)
        if variant not in self._variants:
            self._variants[variant] = compile_tensor_function(self._flat(n, noisy, restarts), inputs, self.options)
        outputs = list(self._variants[variant](*inputs))
        x1 = tuple(outputs[:n])
        x01 = tuple(outputs[n:2 * n]) if restarts else None
        steps1, observation, reward, flags, finite, status = outputs[-6:]
        return StepOutput(x1, x01, steps1, observation, reward, flags, finite, status)

    def _flat(self, n: int, noisy: bool, restarts: bool) -> Callable[..., tuple[torch.Tensor, ...]]:
        """:func:`batched_step` of a variant on flat tensors (what is traced): ``steps``, the ``n`` components of the
        state and of the start, the actions, then the noise and the restart's mask and counters where present."""

        def flat(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            steps, x, x0, action = tensors[0], tensors[1:n + 1], tensors[n + 1:2 * n + 1], tensors[2 * n + 1]
            rest = list(tensors[2 * n + 2:])
            noise = rest.pop(0) if noisy else None
            restart, keys, episodes = rest if restarts else (None, None, None)
            out = batched_step(self.batch, steps, x, x0, action, noise, restart, keys, episodes)
            return (*out.x, *(out.x0 or ()), out.steps, out.observation, out.reward, out.flags, out.actions_finite,
                    out.status)

        return flat


def seeded_counters(seed: int | list[int | None] | None, indices: np.ndarray, keys: np.ndarray | None,
                    episodes: np.ndarray, num_envs: int) -> tuple[np.ndarray, np.ndarray]:
    """The keys and episode counters after a reset of the environments ``indices`` with ``seed``, as N single envs
    reset with these seeds would set them (new arrays; ``keys`` ``None`` before the first reset).

    ``seed=s`` seeds environment ``i`` with ``s + i``; a list gives each environment its seed; ``None`` (or
    a ``None`` in the list) continues an environment's seeded sequence with its next episode.
    """
    seeds: list[int | None]
    if isinstance(seed, (list, tuple)):
        if len(seed) != num_envs:
            raise ValueError(f"seed must be an int, None or a list of {num_envs} ints, got a list of {len(seed)}")
        seeds = [None if s is None else as_integer(f"seed[{i}]", s, None, or_none=True, wrong_type=TypeError)
                 for i, s in enumerate(seed)]
    elif seed is None or is_integer(seed):
        seeds = [None if seed is None else int(seed) + i for i in range(num_envs)]
    else:
        raise TypeError(f"seed must be an int, None or a list of {num_envs} ints, got {seed!r}")
    first = keys is None
    keys = np.zeros(num_envs, np.uint64) if keys is None else keys.copy()
    episodes = np.zeros(num_envs, np.uint64) if first else episodes.copy()
    if seed is None and not first:  # every environment continues with its next episode
        episodes[indices] += np.uint64(1)
    elif is_integer(seed):  # one int: the seeds s, s + 1, ... (one vectorised draw of the keys)
        keys[indices] = random.keys_for_seed(seeds[0], num_envs)[indices]
        episodes[indices] = 0
    else:
        for i in indices:
            s = seeds[i]
            if s is None and not first:
                episodes[i] += np.uint64(1)
                continue
            keys[i] = random.key_from_generator(gym.utils.seeding.np_random(s)[0])
            episodes[i] = 0
    return keys, episodes
