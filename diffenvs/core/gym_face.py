"""The Gymnasium face: one environment, numpy in and out, stepping a batch of one in torch.

A single environment takes the vector face's arithmetic on a batch of one: the same torch
kernels, the same order, float64, the same counter-based draws (the step of
:func:`~diffenvs.core.vector_step.batched_step`: the control from the action, the one
:func:`~diffenvs.core.transition.transition`, the float32 observation). ``gymnasium.make(id)``
and ``gymnasium.make_vec(id, num_envs=1)`` therefore agree to the last bit, which Gymnasium's
own vector-equivalence check asks for; on Python floats (``math.sin`` against torch's kernels)
they differed in the last bit on four ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.error import ResetNeeded

from diffenvs.core import random
from diffenvs.core.numerics import TORCH, Components, stack
from diffenvs.core.problem import Held, Problem, ProblemAttributes
from diffenvs.core.transition import OBSERVATION_LIMIT, transition
from diffenvs.core.validation import as_finite_array, check_options

#: the single face's precision (the vector face's default)
DTYPE = torch.float64


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
        #: the constants as the step computes with them (arrays as float64 tensors)
        self._params = self.problem.params_like(self.problem.params, torch.zeros((), dtype=DTYPE))
        self._key: np.uint64 | None = None
        self._episode = 0
        self._x: Components | None = None  # the internal state, components of one row
        self._x0: Components = ()
        self._observation = torch.zeros(0)
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
        return self._physical(self._x)

    def _physical(self, x: Components) -> np.ndarray:
        return stack(self.problem.state_to_physical(x)).double().numpy()[0]

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

    # ---- the arithmetic: the vector face's, on one row -------------------------------------
    def _tensor(self, array: Any) -> torch.Tensor:
        return torch.as_tensor(array, dtype=DTYPE)

    def _row(self, components: Components) -> Components:
        """Components as tensors of one row (a constant component broadcast), as the vector face keeps them."""
        return tuple(self._tensor(c).expand(1) if not isinstance(c, torch.Tensor) or c.dim() == 0 else c
                     for c in components)

    def _observe(self, k: int, x: Components) -> torch.Tensor:
        t = torch.full((1,), k, dtype=torch.int32).to(DTYPE) * self.problem.dt
        return stack(self.problem.observation(t, x, self._params, TORCH), like=t).to(torch.float32)

    # ---- Gymnasium API -----------------------------------------------------------------
    @torch.no_grad()
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = check_options(options, ("state",))
        if seed is not None or self._key is None:
            self._key, self._episode = random.key_from_generator(self.np_random), 0
        else:
            self._episode += 1
        problem = self.problem
        self._params = problem.params_like(problem.params, torch.zeros((), dtype=DTYPE))
        if "state" in options:
            state = as_finite_array('options["state"]', options["state"], (problem.state_dim,))
            problem.check_state(state)
            x = self._row(problem.state_from_physical(self._tensor(state[None]).unbind(-1), self._params, TORCH))
        else:
            draws = self._tensor(initial_draws(problem, np.array([self._key]), np.array([self._episode], np.uint64)))
            x = self._row(problem.initial_state(draws, self._params, TORCH))
        observation = self._observe(0, x)
        if not bool((observation.double().abs() <= OBSERVATION_LIMIT).all()):
            source = 'options["state"]' if "state" in options else "the start drawn from the constructor's constants"
            raise ValueError(f"{source} gives an observation outside the float32 range: {observation[0].tolist()}")
        self._x, self._x0, self._steps, self._done = x, x, 0, False
        self._observation = observation
        self._trail = []
        if self.render_mode is not None:
            self._trail.append(self._physical(x))
        if self.render_mode == "human":
            self.render()
        return observation[0].numpy().copy(), {}

    @torch.no_grad()
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        x, key = self._x, self._key
        if x is None or key is None:
            raise ResetNeeded("call reset() before step()")
        if self._done:
            raise ResetNeeded("the episode has ended; call reset() before step()")
        problem, params = self.problem, self._params
        a = self._tensor(as_finite_array("action", action, (problem.control_dim,))[None])
        noise = None
        if problem.step_noise:
            counters = np.array([self._steps + 1], np.uint64)
            draws = random.normal(np.array([key]), np.array([self._episode], np.uint64), counters, problem.step_noise)
            noise = self._tensor(draws).unbind(-1)
        # batched_step's arithmetic on one row: the step index in the state's dtype, the control from the action
        k = torch.full((1,), self._steps, dtype=torch.int32).to(DTYPE)
        control = Held(problem.control_from_action(a.unbind(-1), TORCH))
        step = transition(problem, k, x, control, x0=self._x0, params=params, ns=TORCH, noise=noise)
        observation = stack(step.observation or (), like=k).to(torch.float32)
        reward = float(step.reward.to(torch.float64)[0])
        info: dict[str, Any] = {}
        if not bool(step.finite[0]):
            self._done = True
            info["nonfinite_state"] = True  # the state left the representable range: keep the last good one
            return self._observation[0].numpy().copy(), 0.0, False, True, info
        self._x, self._steps, self._observation = self._row(step.x), self._steps + 1, observation
        terminated, truncated = bool(step.terminated[0]), bool(step.truncated[0])
        self._done = terminated or truncated
        if self.render_mode is not None:
            self._trail.append(self._physical(self._x))
        if self.render_mode == "human":
            self.render()
        return observation[0].numpy().copy(), reward, terminated, truncated, info

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
