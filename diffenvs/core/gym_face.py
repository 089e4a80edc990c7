"""The Gymnasium face: one environment, numpy in and out, stepping on Python floats.

A single environment is a few numbers: torch's per-call overhead would dominate (a batch of one
in torch stepped over ten times slower), so the definition's component-wise physics runs here on
Python floats (:data:`~diffenvs.core.numerics.SCALAR`), the same code, step rule and
counter-based draws the batched torch faces run. ``gymnasium.make(id)`` and
``gymnasium.make_vec(id, num_envs=1)`` agree to the last bits: Python's ``math`` and torch's
kernels round ``sin``, ``cos``, ``exp`` and a few others differently in the last bit of float64.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.error import ResetNeeded

from diffenvs.core import random
from diffenvs.core.numerics import SCALAR
from diffenvs.core.problem import Held, Problem, ProblemAttributes
from diffenvs.core.transition import OBSERVATION_LIMIT, transition
from diffenvs.core.validation import as_finite_array, check_options


def observation_space(problem: Problem) -> spaces.Box:
    low = np.clip(np.array(problem.observation_low, np.float64), -OBSERVATION_LIMIT, OBSERVATION_LIMIT)
    high = np.clip(np.array(problem.observation_high, np.float64), -OBSERVATION_LIMIT, OBSERVATION_LIMIT)
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


def action_space(problem: Problem) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (problem.control_dim,), np.float32)


def initial_draws(problem: Problem, key: Any, episode: Any) -> np.ndarray:
    kind, count = problem.initial_draws
    draw = random.uniform if kind == "uniform" else random.normal
    return draw(key, episode, 0, count)


def render_fps(dt: float) -> int:
    """Frames per second of ``human`` rendering and of recorded videos: one frame per step, between 1 and 1000."""
    fps = 1.0 / dt
    return 1000 if fps > 1000 else max(1, round(fps))


def spec_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A spec's keyword arguments with a dataclass ``params`` written as the mapping of its fields.

    ``params=`` takes a mapping as well as the dataclass (:func:`~diffenvs.core.constants.plain_constants`),
    so the spec stays a description that ``EnvSpec.to_json``/``from_json`` and ``gymnasium.make(env.spec)``
    carry: a dataclass of numbers is not JSON.
    """
    params = kwargs.get("params")
    if params is None or isinstance(params, Mapping) or not dataclasses.is_dataclass(params) \
            or isinstance(params, type):
        return kwargs
    fields = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.init}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in fields.values()):
        return kwargs  # arrays or tensors: the spec keeps the object itself
    return {**kwargs, "params": fields}


class DiffEnv(ProblemAttributes, gym.Env[np.ndarray, np.ndarray]):
    """Gymnasium environment built from a :class:`~diffenvs.core.problem.Problem`.

    Subclasses set :attr:`problem_type`; keyword arguments build the problem (``params`` as its
    dataclass or as a mapping of its fields). The current physical state is :attr:`state` (numpy,
    the order of ``problem.state_names``), the seconds per step :attr:`dt`, the constants
    :attr:`params`. ``reset(options={"state": s})`` starts from the physical state ``s``.

    A step whose state, reward or observation is not representable (inf, nan, beyond the
    float32 range) keeps the last good state, shows the last observation again and truncates the
    episode with ``info["nonfinite_state"]``, as the vector face does.

    The episode's length is the problem's ``max_steps``: the environment ends its episodes itself
    (the horizon is part of the problem: the terminal cost is paid there, the observed time is
    ``t / T``), so its id is registered without a ``TimeLimit`` and its spec's
    ``max_episode_steps`` is ``None``, as registered: no length is claimed that no wrapper applies.
    ``gymnasium.make(id, max_episode_steps=n)`` adds Gymnasium's ``TimeLimit``, which can only end an
    episode earlier; a longer episode is ``max_steps=n``.
    """

    problem_type: ClassVar[type[Problem[Any]]]
    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50}

    def __init__(self, render_mode: str | None = None, **problem_kwargs: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.problem = self.problem_type(**problem_kwargs)
        self.render_mode = render_mode
        self.observation_space = observation_space(self.problem)
        self.action_space = action_space(self.problem)
        self.metadata = {**self.metadata, "render_fps": render_fps(self.problem.dt)}
        self._key: np.uint64 | None = None
        self._episode = 0
        self._x: tuple[float, ...] | None = None
        self._x0: tuple[float, ...] = ()
        self._steps = 0
        self._done = False
        self._trail: list[np.ndarray] = []
        self._figure: Any = None

    # ---- documented attributes ---------------------------------------------------------
    @property
    def spec(self) -> EnvSpec | None:
        """The spec ``gymnasium.make`` set (a dataclass ``params`` recorded as the mapping of its fields)."""
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, spec: EnvSpec | None) -> None:
        if spec is not None:
            spec = dataclasses.replace(spec, kwargs=spec_kwargs(spec.kwargs))
        self._spec = spec

    @property
    def state(self) -> np.ndarray:
        """The physical state, float64, in the order of ``problem.state_names``."""
        if self._x is None:
            raise ResetNeeded("the environment has no state before reset()")
        return np.array(self.problem.state_to_physical(self._x), dtype=np.float64)

    def episode_noise(self, steps: int | None = None) -> np.ndarray:
        """The standard normal process-noise draws of this episode, shape ``(steps, problem.step_noise)``.

        Row ``k`` is what step ``k`` uses: pass it as ``rollout(..., noise=...)`` to replay the
        episode on the gradient path.
        """
        if self._key is None:
            raise ResetNeeded("the episode's noise is fixed by reset(); call it first")
        steps = self.problem.max_steps if steps is None else steps
        counters = np.arange(1, steps + 1, dtype=np.uint64)
        return random.normal(np.full(steps, self._key), np.full(steps, self._episode, np.uint64), counters,
                             self.problem.step_noise)

    # ---- Gymnasium API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = check_options(options, ("state",))
        if seed is not None or self._key is None:
            self._key, self._episode = random.key_from_generator(self.np_random), 0
        else:
            self._episode += 1
        problem = self.problem
        if "state" in options:
            state = as_finite_array('options["state"]', options["state"], (problem.state_dim,))
            problem.check_state(state)
            x = problem.state_from_physical(tuple(state.tolist()), problem.params, SCALAR)
        else:
            draws = initial_draws(problem, self._key, np.uint64(self._episode)).tolist()
            x = problem.initial_state(draws, problem.params, SCALAR)
        observation = problem.observation(0.0, x, problem.params, SCALAR)
        if not all(-OBSERVATION_LIMIT <= o <= OBSERVATION_LIMIT for o in observation):
            source = 'options["state"]' if "state" in options else "the start drawn from the constructor's constants"
            raise ValueError(f"{source} gives an observation outside the float32 range: {observation}")
        self._x, self._x0, self._steps, self._done = x, x, 0, False
        self._trail = [self.state] if self.render_mode is not None else []
        if self.render_mode == "human":
            self.render()
        return np.array(observation, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        x, key = self._x, self._key
        if x is None or key is None:
            raise ResetNeeded("call reset() before step()")
        if self._done:
            raise ResetNeeded("the episode has ended; call reset() before step()")
        problem = self.problem
        a = as_finite_array("action", action, (problem.control_dim,))
        u = problem.control_from_action(tuple(a.tolist()), SCALAR)
        noise = None
        if problem.step_noise:  # the vector face's draws, by the same function
            counters = np.array([self._steps + 1], np.uint64)
            draws = random.normal(np.array([key]), np.array([self._episode], np.uint64), counters, problem.step_noise)
            noise = tuple(draws[0].tolist())
        try:
            step = transition(problem, self._steps, x, Held(u), x0=self._x0, params=problem.params, ns=SCALAR,
                              noise=noise)
        except ArithmeticError:  # Python floats raise (x / 0.0, an overflowing **) where tensors give inf or nan
            step = None
        info: dict[str, Any] = {}
        if step is None or not step.finite:
            self._done = True
            info["nonfinite_state"] = True  # the state left the representable range: keep the last good one
            return self._observation(x), 0.0, False, True, info
        self._x, self._steps = step.x, self._steps + 1
        terminated, truncated = bool(step.terminated), bool(step.truncated)
        self._done = terminated or truncated
        if self.render_mode is not None:
            self._trail.append(self.state)
        if self.render_mode == "human":
            self.render()
        return np.array(step.observation, dtype=np.float32), float(step.reward), terminated, truncated, info

    def _observation(self, x: tuple[float, ...]) -> np.ndarray:
        obs = self.problem.observation(self._steps * self.problem.dt, x, self.problem.params, SCALAR)
        return np.array(obs, dtype=np.float32)

    def render(self) -> np.ndarray | None:
        """The frame of the current state; problems that draw a path (a phase plane) draw this episode's trail."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to make()")
            return None
        frame = self.problem.render_episode(np.array(self._trail) if self._trail else self.state[None])
        if self.render_mode == "rgb_array":
            return frame
        import matplotlib.pyplot as plt

        if self._figure is None:
            self._figure = plt.figure()
            self._image = plt.imshow(frame)
            plt.axis("off")
        self._image.set_data(frame)
        plt.pause(1.0 / self.metadata["render_fps"])
        return None

    def close(self) -> None:
        if self._figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self._figure)
            self._figure = None
