"""Episodes on the Gymnasium face: one protocol for every agent, one loop that plays them.

Every agent is judged the same way: a deterministic policy (observation -> action in
``[-1, 1]``) plays whole episodes of the Gymnasium face, episode ``i`` starting from
``reset(seed=seed + i)`` (or from a given physical state), and its cost is minus its return.
:func:`play` is the one loop; :func:`evaluate`, :func:`run_episodes` and
:func:`record_episode` are the views of it that callers need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import diffenvs  # noqa: F401  (registers the ids)
from diffenvs.core.gym_face import DiffEnv
from diffenvs.core.numerics import SCALAR
from diffenvs.core.problem import Problem

#: evaluation episodes are reset with seeds EVAL_SEED, EVAL_SEED + 1, ... (disjoint from training seeds)
EVAL_SEED = 10_000

GymPolicy = Callable[[np.ndarray], np.ndarray]
"""Gymnasium observation -> Gymnasium action in [-1, 1] (deterministic)."""


@dataclass
class Episode:
    """One Gymnasium-face episode.

    ``cost`` is minus the return and ``terminated`` says it ended by termination (not by
    truncation). With ``record=True`` in :func:`play` the trajectory is kept too: ``times``
    ``(T+1,)`` in seconds, ``states`` ``(T+1, n)`` physical, ``observations`` ``(T+1, obs)``,
    ``controls`` ``(T, m)`` physical; otherwise they are ``None``.
    """

    cost: float
    terminated: bool
    times: np.ndarray | None = None
    states: np.ndarray | None = None
    observations: np.ndarray | None = None
    controls: np.ndarray | None = None


def diff_env(env: gym.Env) -> DiffEnv:
    """The diffenvs Gymnasium face under ``env``'s wrappers (a ``TypeError`` for any other environment)."""
    face = env.unwrapped
    if not isinstance(face, DiffEnv):
        raise TypeError(f"env must be a diffenvs environment, got {type(face).__name__} under its wrappers")
    return face


def physical_control(problem: Problem[Any], action: np.ndarray) -> np.ndarray:
    """The physical control the Gymnasium face applies for ``action`` (its own map, clipping included)."""
    return np.array(problem.control_from_action(tuple(np.asarray(action, np.float64).tolist()), SCALAR))


def play(env_id: str, policy: GymPolicy, episodes: int = 1, env_kwargs: dict[str, Any] | None = None,
         seed: int = EVAL_SEED, states: np.ndarray | None = None, record: bool = False) -> list[Episode]:
    """Play ``episodes`` episodes of ``policy`` on the Gymnasium face of ``env_id`` (built with ``env_kwargs``).

    Episode ``i`` starts from ``reset(seed=seed + i)``, or from the physical state ``states[i]``
    when given. ``record`` keeps each episode's trajectory (see :class:`Episode`).
    """
    if not (isinstance(episodes, int) and episodes >= 1):
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    env = gym.make(env_id, **(env_kwargs or {}))
    face = diff_env(env) if record else None  # a recorded trajectory is in the definition's units
    played = []
    for i in range(episodes):
        options = None if states is None else {"state": states[i]}
        observation, _ = env.reset(seed=seed + i, options=options)
        trace = None if face is None else _Trace(face, observation)
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            action = policy(observation)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if trace is not None:
                trace.add(action, observation)
        episode = Episode(-total, bool(terminated))
        if trace is not None:
            trace.fill(episode)
        played.append(episode)
    env.close()
    return played


class _Trace:
    """One episode's physical states, observations and physical controls as it is played."""

    def __init__(self, face: DiffEnv, observation: np.ndarray):
        self.face = face
        self.states: list[np.ndarray] = [face.state]
        self.observations: list[np.ndarray] = [observation]
        self.controls: list[np.ndarray] = []

    def add(self, action: np.ndarray, observation: np.ndarray) -> None:
        """One step: the action taken and the observation after it."""
        self.controls.append(physical_control(self.face.problem, action))
        self.states.append(self.face.state)
        self.observations.append(observation)

    def fill(self, episode: Episode) -> None:
        """The trajectory into ``episode``'s arrays (see :class:`Episode`)."""
        problem = self.face.problem
        episode.times = np.arange(len(self.states)) * problem.dt
        episode.states, episode.observations = np.array(self.states), np.array(self.observations)
        episode.controls = np.array(self.controls).reshape(-1, problem.control_dim)


def run_episodes(env_id: str, policy: GymPolicy, episodes: int = 10, env_kwargs: dict[str, Any] | None = None,
                 seed: int = EVAL_SEED, states: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Costs of :func:`play`'s episodes, and whether each one ended by termination (rather than truncation)."""
    played = play(env_id, policy, episodes, env_kwargs, seed, states)
    return np.array([e.cost for e in played]), np.array([e.terminated for e in played], dtype=bool)


def evaluate(env_id: str, policy: GymPolicy, episodes: int = 10, env_kwargs: dict[str, Any] | None = None,
             seed: int = EVAL_SEED, states: np.ndarray | None = None) -> np.ndarray:
    """Costs (minus returns) of :func:`play`'s episodes."""
    return run_episodes(env_id, policy, episodes, env_kwargs, seed, states)[0]


def record_episode(env_id: str, policy: GymPolicy, env_kwargs: dict[str, Any] | None = None, seed: int = EVAL_SEED,
                   state: np.ndarray | None = None) -> Episode:
    """One recorded episode of ``policy`` from ``reset(seed=seed)`` (or the physical ``state``)."""
    return play(env_id, policy, 1, env_kwargs, seed, None if state is None else np.asarray(state)[None], record=True)[0]


def start_states(env_id: str, env_kwargs: dict[str, Any] | None, episodes: int, seed: int = EVAL_SEED) -> np.ndarray:
    """The physical start states ``(episodes, n)`` of the episodes ``reset(seed=seed + i)``."""
    env = gym.make(env_id, **(env_kwargs or {}))
    face = diff_env(env)
    states = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        states.append(face.state)
    env.close()
    return np.array(states)


def gym_policy(policy: Callable[[torch.Tensor], torch.Tensor], problem: Problem[Any],
               dtype: torch.dtype | None = None) -> GymPolicy:
    """A Gymnasium policy from a torch-path policy (observations ``(B, obs)`` -> physical controls ``(B, m)``).

    The float32 observation is cast to the policy's dtype (its parameters', else
    ``dtype``, else float64) and moved to its parameters' device, the physical control mapped
    to an action in ``[-1, 1]`` by ``problem.action_from_control``.
    """
    parameters = list(policy.parameters()) if isinstance(policy, torch.nn.Module) else []
    if dtype is None:
        dtype = parameters[0].dtype if parameters else torch.float64

    def act(observation: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            device = parameters[0].device if parameters else None  # read per call: a module may move
            obs = torch.as_tensor(np.asarray(observation), dtype=dtype, device=device).reshape(1, -1)
            control = policy(obs)[0].cpu().numpy().astype(np.float64)
        return np.asarray(problem.action_from_control(control), dtype=np.float32)

    return act


def controls_on(problem: Problem[Any], policy: GymPolicy, observations: np.ndarray) -> np.ndarray:
    """Physical controls ``(k, m)`` a Gymnasium policy applies at each of ``observations``."""
    return np.array([physical_control(problem, policy(np.asarray(o, np.float32))) for o in observations])


class TrainedNetwork:
    """What a training run of a torch policy network hands back, read from its ``history``.

    A subclass (a dataclass) has ``problem``, ``policy`` (observations -> physical controls) and
    ``history``, one dict per iteration with at least the cumulative ``transitions`` and ``seconds``.
    """

    problem: Problem[Any]
    policy: torch.nn.Module
    history: list[dict[str, float]]

    @property
    def transitions(self) -> int:
        """Simulated transitions of the whole run."""
        return int(self.history[-1]["transitions"]) if self.history else 0

    @property
    def seconds(self) -> float:
        """Training wall time of the whole run."""
        return float(self.history[-1]["seconds"]) if self.history else 0.0

    def gym_policy(self) -> GymPolicy:
        """The network as a Gymnasium policy: numpy observation -> action in [-1, 1]."""
        return gym_policy(self.policy, self.problem)
