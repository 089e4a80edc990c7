"""The vector face as a stable-baselines3 ``VecEnv``: N environments, one batched call per step.

SB3 and Gymnasium's vector face disagree on one thing, the autoreset:

- the vector face (:class:`diffenvs.core.vector_face.DiffVectorEnv`) resets an environment
  whose episode ended at step ``t`` during the *next* ``step`` call, which ignores its action
  and returns its first observation with reward 0 (Gymnasium's next-step autoreset);
- SB3 expects the *same* ``step`` to return the next episode's first observation, with the
  last one in ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]``
  set for an episode cut short rather than ended (its value is then bootstrapped from the last
  observation). A time limit that the problem prices (``timeout_cost``: Zermelo pays the
  straight-across completion there) is a terminal value already, so there the flag stays off.

:class:`NativeVecEnv` bridges them: after each batched ``step`` it restarts the environments (``DiffVectorEnv.restart_episodes``)
that just ended, drawing exactly the start the next-step autoreset would have drawn (the
same counter-based draw: episode ``k + 1`` of environment ``i``), and clears their pending
autoreset. So the transitions SB3 sees equal those of SB3's ``DummyVecEnv`` over single
Gymnasium environments seeded ``s, s + 1, ...`` (``tests/test_sb3_vec.py``), at the cost of
one batched step per step instead of N.

:func:`make_vec_env` picks it for an id with a vector entry point on the vector face, and
SB3's ``DummyVecEnv`` for any other id (e.g. gymnasium's ``Pendulum-v1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

import diffenvs  # noqa: F401  (registers the ids)
from diffenvs.core.numerics import SCALAR
from diffenvs.core.problem import Problem
from diffenvs.core.vector_face import DiffVectorEnv


def priced_time_limit(problem: Problem[Any]) -> bool:
    """Whether ``problem`` pays a cost when its time limit ends an episode (:meth:`Problem.timeout_cost`)."""
    x = problem.initial_state(np.full(problem.initial_draws[1], 0.5).tolist(), problem.params, SCALAR)
    return problem.timeout_cost(x, problem.params, SCALAR) is not None


class NativeVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a :class:`DiffVectorEnv` (same-step autoreset, see the module docstring).

    ``seed(s)`` then ``reset()`` resets the vector env with seed ``s``: environment ``i``
    starts as a single environment reset with seed ``s + i``, as in SB3's ``DummyVecEnv``.
    """

    def __init__(self, vector_env: gym.vector.VectorEnv):
        if not isinstance(vector_env, DiffVectorEnv):
            raise TypeError(f"vector_env must be a diffenvs DiffVectorEnv, got {type(vector_env).__name__}")
        if vector_env.autoreset_mode != AutoresetMode.NEXT_STEP:
            raise ValueError("vector_env must restart its episodes at the next step (autoreset_mode=NEXT_STEP, the "
                             f"default): this wrapper restarts ended episodes itself, got {vector_env.autoreset_mode}")
        self.vector_env: DiffVectorEnv = vector_env
        #: the time limit is priced (``problem.timeout_cost``): the step that reaches it already pays what the
        #: episode had left to do, a terminal value, so a learner must not bootstrap V(s_T) on top of it
        self.priced_time_limit = priced_time_limit(vector_env.problem)
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = set(self._seeds)
        seed = None if seeds == {None} else self._seeds[0]
        if seed is not None and list(self._seeds) != [seed + i for i in range(self.num_envs)]:
            raise ValueError(f"seeds must be consecutive (seed(s) gives s, s + 1, ...), got {self._seeds}")
        options = self._options[0] or None
        observation, _ = self.vector_env.reset(seed=seed, options=options)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return observation

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        observation, reward, terminated, truncated, info = self.vector_env.step(self._actions)
        dones = terminated | truncated
        bootstrap = truncated & ~terminated
        if self.priced_time_limit:  # only a non-finite state still cuts an episode whose value is unknown
            bootstrap = bootstrap & np.asarray(info.get("nonfinite_state", np.zeros(self.num_envs, bool)), bool)
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": bool(bootstrap[i])} for i in range(self.num_envs)]
        for key, values in info.items():  # the vector face's per-environment arrays, e.g. nonfinite_state
            for i in range(self.num_envs):
                infos[i][key] = values[i]
        ended = np.flatnonzero(dones)
        if len(ended):
            for index in ended:
                infos[index]["terminal_observation"] = observation[index].copy()
            observation[ended] = self.vector_env.restart_episodes(ended)
        return observation, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.vector_env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list:
        return [getattr(self.vector_env, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.vector_env.render() or [None] * self.num_envs)


def has_vector_face(env_id: str) -> bool:
    """Whether ``env_id`` is registered with a vector entry point (the diffenvs vector face)."""
    return gym.spec(env_id).vector_entry_point is not None


def make_vec_env(env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any] | None = None) -> VecEnv:
    """``n_envs`` environments of ``env_id`` as one SB3 ``VecEnv``, environment ``i`` seeded ``seed + i``.

    The vector face (:class:`NativeVecEnv`, one batched step) where the id has one, else
    SB3's ``DummyVecEnv`` of single Gymnasium environments (each in SB3's ``Monitor``).
    """
    if not (isinstance(n_envs, int) and n_envs >= 1):
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
    env_kwargs = dict(env_kwargs or {})
    if has_vector_face(env_id):
        vec_env: VecEnv = NativeVecEnv(gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point",
                                                    **env_kwargs).unwrapped)
    else:
        vec_env = sb3_make_vec_env(env_id, n_envs, env_kwargs=env_kwargs)
    vec_env.seed(seed)
    return vec_env
