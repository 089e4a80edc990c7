"""Property tests over every registered id: random constants, start states and actions, right and wrong.

Each example builds an environment from constants drawn for its constructor's arguments
(values near the defaults, extreme ones, numpy scalars, bools, strings, ``None``), resets it
(from its own start or from a drawn state) and steps it with drawn actions (inside the box,
outside it, huge, non-finite, of the wrong shape). Whatever comes, the environment either
refuses it with a ``ValueError``/``TypeError`` whose message names the argument, or returns
finite observations inside the observation space and finite rewards. Derandomized, so a
failure reproduces.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import diffenvs
from diffenvs.core.registration import problem_type_of

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None)
#: a drawn constant left at its default (not passed)
DEFAULT = object()

EXTREME = [0.0, -1.0, 1e-300, 1e-80, 1e-8, 1e8, 1e39, -1e39, 1e200, 1e300, math.nan, math.inf, -math.inf]
WRONG = [True, False, np.bool_(True), "1.0", None, [1.0]]


def nice_real(default: float) -> st.SearchStrategy:
    """A float constant near its default, as a Python or a numpy scalar."""
    near = st.floats(0.25, 4.0).map(lambda f: default * f if default else f - 0.25)
    return st.one_of(near, near.map(np.float32), near.map(np.float64))


BAD_REAL = st.sampled_from(EXTREME + WRONG)
#: integer constants; the valid ones small, so that every episode ends within a few steps
NICE_INTEGER = st.one_of(st.integers(1, 8), st.integers(1, 8).map(np.int64))
BAD_INTEGER = st.sampled_from([0, -1, 2.0, True, "3", None, np.float64(3.0)])
NICE_MATRIX = st.sampled_from(["jordan", "random"])
BAD_MATRIX = st.one_of(
    st.sampled_from(["diagonal", 1.0, None, [["a"]]]),
    st.builds(lambda n, c: c * np.eye(n), st.integers(1, 5), st.sampled_from([0.0, 0.5, -1.0, 1e200, math.nan])),
)


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def argument(name: str, default: Any, bad: bool) -> st.SearchStrategy:
    """A value of the constructor's argument ``name``: a valid-looking one, or (``bad``) an extreme or wrong one."""
    if name in ("max_steps", "d"):
        return BAD_INTEGER if bad else NICE_INTEGER
    if name == "matrix":
        return BAD_MATRIX if bad else NICE_MATRIX
    if isinstance(default, str):  # a choice: only the default is known to be valid
        return st.sampled_from(["bogus", 1.0, None]) if bad else st.just(default)
    if dataclasses.is_dataclass(default):  # the params: their fields drawn, one of them bad, or a wrong type
        names = [f.name for f in dataclasses.fields(default)]

        @st.composite
        def params(draw: st.DrawFn) -> Any:
            changes = {n: draw(nice_real(getattr(default, n))) for n in names if draw(st.booleans())}
            if bad:
                if draw(st.integers(0, 4)) == 0:
                    return draw(st.sampled_from([None, {"gravity": 9.8}]))
                changes[draw(st.sampled_from(names))] = draw(BAD_REAL)
            return dataclasses.replace(default, **changes)

        return params()
    return BAD_REAL if bad else nice_real(float(default))


@st.composite
def constants(draw: st.DrawFn, env_id: str) -> dict[str, Any]:
    """Keyword arguments for the id: every argument perhaps (``max_steps`` always, small), one of them perhaps bad."""
    fields = {f.name: default_of(f) for f in dataclasses.fields(problem_type_of(env_id)) if f.init}
    kwargs = {"max_steps": draw(NICE_INTEGER)}
    for name, default in fields.items():
        if name != "max_steps" and draw(st.booleans()):
            kwargs[name] = draw(argument(name, default, bad=False))
    bad = draw(st.one_of(st.none(), st.sampled_from(sorted(fields))))
    if bad is not None:
        kwargs[bad] = draw(argument(bad, fields[bad], bad=True))
    return kwargs


def states(dim: int) -> st.SearchStrategy:
    """``reset``'s options: none mostly, else a start state (finite, huge, non-finite, or of the wrong shape)."""
    component = st.one_of(st.floats(-3.0, 3.0), st.sampled_from([1e30, -1e39, 1e300, math.nan, math.inf]))
    return st.one_of(
        st.none(), st.none(),
        st.lists(component, min_size=dim, max_size=dim).map(lambda s: {"state": s}),
        st.sampled_from([{"state": [0.0] * (dim + 1)}, {"state": "zero"}, {"state": None}, {"start": [0.0] * dim}]),
    )


def actions(shape: tuple[int, ...]) -> st.SearchStrategy:
    """One action: inside the box, outside it, huge, non-finite, or of the wrong shape."""
    size = int(np.prod(shape))

    def of(values: list) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(shape)

    return st.one_of(
        st.lists(st.floats(-1.0, 1.0), min_size=size, max_size=size).map(of),
        st.lists(st.floats(-1e3, 1e3), min_size=size, max_size=size).map(of),
        st.lists(st.sampled_from([1e20, -1e38, 1e200, -1e300, 0.5]), min_size=size, max_size=size).map(of),
        st.lists(st.sampled_from([math.nan, math.inf, 0.0]), min_size=size, max_size=size)
        .filter(lambda values: not all(map(math.isfinite, values))).map(of),
        st.sampled_from([np.zeros(size + 1), np.zeros(()), "left", None]),
    )


def names_an_argument(error: Exception, names: Any) -> bool:
    message = str(error)
    return any(name in message for name in names)


def assert_valid(space: gym.spaces.Box, observation: np.ndarray, reward: Any) -> None:
    assert np.isfinite(observation).all(), observation
    assert space.contains(observation), (observation, space)
    assert np.isfinite(reward).all(), reward


def build(env_id: str, kwargs: dict[str, Any], **face: Any) -> gym.Env | None:
    """The environment (the single face, or the vector face when ``face`` has ``num_envs``), or ``None``
    if the constants are refused with a message naming one of them."""
    spec = gym.spec(env_id)
    entry = spec.vector_entry_point if face else spec.entry_point
    try:
        return load_env_creator(entry)(**face, **kwargs)
    except (ValueError, TypeError) as error:
        assert names_an_argument(error, kwargs), (kwargs, error)
        event("constants refused")
        return None


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_single_face_refuses_by_name_or_stays_finite(env_id, data):
    env = build(env_id, data.draw(constants(env_id), label="constants"))
    if env is None:
        return
    options = data.draw(states(env.unwrapped.problem.state_dim), label="options")
    try:
        observation, _ = env.reset(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"), options=options)
    except (ValueError, TypeError) as error:
        assert options is not None and names_an_argument(error, ["options", "state"]), (options, error)
        event("start state refused")
        return
    assert_valid(env.observation_space, observation, 0.0)
    for _ in range(12):
        action = data.draw(actions(env.action_space.shape), label="action")
        try:
            observation, reward, terminated, truncated, _ = env.step(action)
        except (ValueError, TypeError) as error:
            assert names_an_argument(error, ["action"]), (action, error)
            continue
        assert_valid(env.observation_space, observation, reward)
        assert isinstance(reward, float)
        if terminated or truncated:
            event("episode truncated" if truncated else "episode terminated")
            break


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
@settings(max_examples=15, **SETTINGS)
@given(data=st.data())
def test_vector_face_refuses_by_name_or_stays_finite(env_id, data):
    env = build(env_id, data.draw(constants(env_id), label="constants"), num_envs=2)
    if env is None:
        return
    observations, _ = env.reset(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
    assert_valid(env.observation_space, observations, 0.0)
    for _ in range(12):
        action = data.draw(actions(env.action_space.shape), label="actions")
        try:
            observations, rewards, *_ = env.step(action)
        except (ValueError, TypeError) as error:
            assert names_an_argument(error, ["actions"]), (action, error)
            continue
        assert_valid(env.observation_space, observations, rewards)
