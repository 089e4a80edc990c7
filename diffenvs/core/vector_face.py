"""The vector face: N environments stepped in one batched torch call, with next-step autoreset.

Environment ``i`` of a vector env reset with ``seed=s`` draws exactly the numbers of a single
environment reset with ``seed=s + i`` (counter-based draws, :mod:`diffenvs.core.random`),
so N single environments and one vector env give the same trajectories.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from diffenvs.core import random
from diffenvs.core.gym_face import action_space, initial_draws, observation_space
from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Held, Problem, ProblemAttributes, check_integer
from diffenvs.core.transition import OBSERVATION_LIMIT, transition
from diffenvs.core.validation import as_finite_array, check_options


class DiffVectorEnv(ProblemAttributes, VectorEnv):
    """Batched Gymnasium vector environment of a :class:`~diffenvs.core.problem.Problem`.

    Arguments: ``num_envs``; ``dtype`` (``torch.float64`` by default, the single
    environment's precision; ``torch.float32`` for throughput); ``device``; ``compile``
    (fuse the step with ``torch.compile``: seconds to compile, then several times faster
    at large ``num_envs``); the rest builds the problem. Observations, rewards and flags
    are numpy arrays; the batched physical state is :attr:`state` ``(num_envs, n)``.
    """

    problem_type: ClassVar[type[Problem]]
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", compile: bool = False, **problem_kwargs: Any):
        check_integer("num_envs", num_envs)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.problem = self.problem_type(**problem_kwargs)
        self.num_envs, self.render_mode = num_envs, render_mode
        self.dtype, self.device = dtype, torch.device(device)
        self.single_observation_space = observation_space(self.problem)
        self.single_action_space = action_space(self.problem)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._tensor_params = self.problem.params_like(self.problem.params, torch.zeros((), dtype=dtype, device=self.device))
        self._step_fn = torch.compile(self._batched_step, dynamic=False) if compile else self._batched_step
        self._keys: np.ndarray | None = None
        self._x: tuple[torch.Tensor, ...] | None = None
        self._obs: torch.Tensor | None = None  # the last observation, float32 (returned again for a non-finite state)

    @property
    def state(self) -> np.ndarray:
        """Physical states, float64, shape ``(num_envs, n)``."""
        if self._x is None:
            raise ResetNeeded("the environment has no state before reset()")
        return stack(self.problem.state_to_physical(self._x)).double().cpu().numpy()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def _initial(self, indices: np.ndarray) -> tuple[torch.Tensor, ...]:
        draws = self._tensor(initial_draws(self.problem, self._keys[indices], self._episodes[indices]))
        x = self.problem.initial_state(draws, self._tensor_params, TORCH)
        n = len(indices)
        return tuple(torch.as_tensor(c, dtype=self.dtype, device=self.device).expand(n) if not isinstance(c, torch.Tensor)
                     or c.dim() == 0 else c for c in x)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        options = check_options(options, ("state",))
        n = self.num_envs
        if isinstance(seed, (list, tuple)):
            if len(seed) != n:
                raise ValueError(f"seed must be an int, None or a list of {n} ints, got a list of {len(seed)}")
            self._keys = np.array([random.key_from_generator(gym.utils.seeding.np_random(s)[0]) for s in seed], np.uint64)
            self._episodes = np.zeros(n, np.uint64)
        elif seed is not None or self._keys is None:
            self._keys, self._episodes = random.keys_for_seed(seed, n), np.zeros(n, np.uint64)
        else:
            self._episodes = self._episodes + np.uint64(1)
        if "state" in options:
            states = as_finite_array('options["state"]', options["state"], (n, self.problem.state_dim))
            for state in states:
                self.problem.check_state(state)
            states_tensor = self._tensor(states)
            self._x = self.problem.state_from_physical(states_tensor.unbind(-1), self._tensor_params, TORCH)
            observation = stack(self.problem.observation(0.0, self._x, self._tensor_params, TORCH), like=states_tensor)
            if not bool((observation.abs() <= OBSERVATION_LIMIT).all()):
                raise ValueError('options["state"] gives observations outside the float32 range')
        else:
            self._x = self._initial(np.arange(n))
        self._x0 = self._x
        self._steps = torch.zeros(n, dtype=torch.long, device=self.device)
        self._autoreset = np.zeros(n, dtype=bool)
        return self._observation(), {}

    def _batched_step(self, steps, x, x0, action, noise, previous):
        """Everything per step that is arithmetic on the batch, in one function (fused when compiled).

        ``previous`` is the last observation (float32), returned again where the new state is not finite.
        """
        problem, params = self.problem, self._tensor_params
        control = Held(problem.control_from_action(action.unbind(-1), TORCH))
        step = transition(problem, steps, x, control, x0=x0, params=params, ns=TORCH,
                          noise=None if noise is None else noise.unbind(-1))
        observation = stack(step.observation, like=step.reward).to(torch.float32)
        # a state that left the representable range ends that episode (truncated) and keeps its last good state
        observation = torch.where(step.finite[:, None], observation, previous)
        return step.x, observation, step.reward, step.terminated, step.truncated, step.finite

    def _observe(self, steps: torch.Tensor, x: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t = steps.to(self.dtype) * self.problem.dt
        return stack(self.problem.observation(t, x, self._tensor_params, TORCH), like=t)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._x is None:
            raise ResetNeeded("call reset() before step()")
        problem = self.problem
        a = as_finite_array("actions", actions, self.action_space.shape)
        noise = None
        if problem.step_noise:
            steps = self._steps.cpu().numpy().astype(np.uint64) + np.uint64(1)
            noise = self._tensor(random.normal(self._keys, self._episodes, steps, problem.step_noise))
        self._x, self._obs, reward, terminated, truncated, finite = self._step_fn(
            self._steps, self._x, self._x0, self._tensor(a), noise, self._obs)
        self._steps = self._steps + 1
        reward, terminated, truncated = reward.double().cpu().numpy(), terminated.cpu().numpy(), truncated.cpu().numpy()
        info: dict[str, Any] = {}
        if not bool(finite.all()):
            info["nonfinite_state"] = (~finite).cpu().numpy()
        # next-step autoreset: environments whose episode ended at the previous step restart now
        reset = np.flatnonzero(self._autoreset)
        if len(reset):
            self._restart(reset)
            reward[reset], terminated[reset], truncated[reset] = 0.0, False, False
        self._autoreset = terminated | truncated
        return self._obs.cpu().numpy().copy(), reward, terminated, truncated, info

    def _restart(self, indices: np.ndarray) -> torch.Tensor:
        """Start the next episode of the environments ``indices`` (their counters advance by one); their first
        observations, float32."""
        self._episodes[indices] += np.uint64(1)
        fresh = self._initial(indices)
        index = torch.as_tensor(indices, device=self.device)
        self._x = tuple(c.index_copy(0, index, f) for c, f in zip(self._x, fresh))
        self._x0 = tuple(c.index_copy(0, index, f) for c, f in zip(self._x0, fresh))
        self._steps = self._steps.index_fill(0, index, 0)
        first = self._observe(self._steps[index], fresh).to(torch.float32)
        self._obs = self._obs.index_copy(0, index, first)
        self._autoreset[indices] = False
        return first

    def restart_episodes(self, indices: Any) -> np.ndarray:
        """Start the next episode of the environments ``indices`` now, as the next-step autoreset would; their
        first observations ``(len(indices), obs)``.

        The draw is the one the autoreset would make (each environment's episode counter advances by
        one), so a same-step-autoreset wrapper (e.g. an SB3 ``VecEnv``) gives the trajectories of the
        single environments. The pending autoreset of those environments is cleared.
        """
        if self._x is None:
            raise ResetNeeded("call reset() before restart_episodes()")
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_envs):
            raise ValueError(f"indices must lie in [0, {self.num_envs}), got {indices.tolist()}")
        return self._restart(indices).cpu().numpy()

    def _observation(self) -> np.ndarray:
        self._obs = self._observe(self._steps, self._x).to(torch.float32)
        return self._obs.cpu().numpy().copy()

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(self.problem.render(s) for s in self.state)

