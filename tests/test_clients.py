"""What Gymnasium's own tests and its clients ask of the faces, on every registered id.

Two of Gymnasium's tests run here with only their parametrisation adapted (``test_make_vec_wrappers``,
``test_cartpole_vector_equiv``); the rest pins what clients found: constants given as tensors, ``params``
given as a mapping (a spec read back from JSON, rl_zoo3's ``dict(...)``, a Hydra config), the spec's
episode length, the namespace, the phase-plane pictures and the autoreset mode each client needs.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit, TransformObservation

import diffenvs
from diffenvs.core.registration import problem_type_of
from diffenvs.envs.cartpole import CartpoleParams
from diffenvs.envs.isochronism import IsochronismParams
from diffenvs.envs.zermelo import ZermeloParams

IDS = diffenvs.ENV_IDS
ROOT = Path(__file__).resolve().parents[1]


def has_wrapper(env: gym.Env, wrapper_type: type) -> bool:
    """Gymnasium's ``tests.wrappers.utils.has_wrapper``."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_type):
            return True
        env = env.env
    return False


def wrapper_stack(env: gym.Env) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return [*names, type(env).__name__]


# ---- Gymnasium's own tests, parametrised over the ids ------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_wrappers(env_id):
    """Gymnasium's tests/envs/registration/test_make_vec.py::test_make_vec_wrappers, on ``env_id``."""
    env = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", max_steps=6)
    assert isinstance(env, SyncVectorEnv)
    assert len(env.envs) == 2
    sub_env = env.envs[0]
    assert isinstance(sub_env, gym.Env)
    assert sub_env.spec is not None
    if sub_env.spec.max_episode_steps is not None:
        assert has_wrapper(sub_env, TimeLimit)
    assert all(has_wrapper(sub_env, TransformObservation) is False for sub_env in env.envs)
    env.close()

    env = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", max_steps=6,
                       wrappers=[lambda _env: TransformObservation(_env, lambda obs: obs * 2, sub_env.observation_space)])
    assert isinstance(env, SyncVectorEnv)
    assert all(has_wrapper(sub_env, TransformObservation) for sub_env in env.envs)
    env.close()


#: ids whose single-face reward agrees with the vector face's to 1e-9 relative (seen: 3e-12), not bit for bit: the
#: identification error's ill-conditioned least-squares solve and the design criterion's exponentials, in ``math`` and numpy
#: against torch
LAST_BITS = {"DiffLinearSysID-v0", "DiffDecayDesign-v0"}


def same_reward(env_id: str, reward: float, vec_reward: np.ndarray) -> bool:
    if env_id in LAST_BITS:
        return reward == pytest.approx(float(vec_reward[0]), rel=1e-9, abs=1e-15)
    return bool(reward == vec_reward)


@pytest.mark.parametrize("seed", [0, 7, 123])
@pytest.mark.parametrize("env_id", IDS)
def test_vector_equiv(env_id, seed):
    """Gymnasium's tests/envs/test_env_implementation.py::test_cartpole_vector_equiv, on ``env_id``: exact equality.

    Adapted: ``prev_done`` (a CartPoleVectorEnv attribute) is not asserted, and the state is compared row 0
    (the vector face's state is ``(num_envs, n)``). Every id's episodes are cut to 60 steps so that the
    autoreset branch is reached. Observations, states, flags and infos are equal on every id; the rewards of
    :data:`LAST_BITS` to 1e-9 relative (the single face steps on Python floats, which is over ten times
    faster than torch on a batch of one, and Python's ``math`` rounds differently from torch's kernels there).
    """
    env = gym.make(env_id, max_steps=60)
    envs = gym.make_vec(env_id, num_envs=1, max_steps=60)
    assert env.action_space == envs.single_action_space
    assert env.observation_space == envs.single_observation_space

    obs, info = env.reset(seed=seed)
    vec_obs, vec_info = envs.reset(seed=seed)
    env.action_space.seed(seed=seed)
    assert obs in env.observation_space
    assert vec_obs in envs.observation_space
    assert np.all(obs == vec_obs[0])
    assert info == vec_info
    assert np.all(env.unwrapped.state == envs.unwrapped.state[0])

    for _ in range(100):
        action = env.action_space.sample()
        assert np.array([action]) in envs.action_space
        obs, reward, term, trunc, info = env.step(action)
        vec_obs, vec_reward, vec_term, vec_trunc, vec_info = envs.step(np.array([action]))
        assert obs in env.observation_space
        assert vec_obs in envs.observation_space
        assert np.all(obs == vec_obs[0])
        assert same_reward(env_id, reward, vec_reward)
        assert term == vec_term
        assert trunc == vec_trunc
        assert info == vec_info
        assert np.all(env.unwrapped.state == envs.unwrapped.state[0])
        if term or trunc:
            break
    assert term or trunc

    obs, info = env.reset()
    vec_obs, vec_reward, vec_term, vec_trunc, vec_info = envs.step(envs.action_space.sample())
    assert np.all(obs == vec_obs[0])
    assert vec_reward == np.array([0])
    assert vec_term == np.array([False])
    assert vec_trunc == np.array([False])
    assert info == vec_info
    assert np.all(env.unwrapped.state == envs.unwrapped.state[0])
    env.close()


# ---- constants given as tensors are checked as the same numbers are -----------------------------------------------
BAD_TENSORS = [
    ("DiffCartpole-v0", lambda v: CartpoleParams(pole_mass=v), "params.pole_mass"),
    ("DiffIsochronism-v0", lambda v: IsochronismParams(period=v), "params.period"),
    ("DiffZermelo-v0", lambda v: ZermeloParams(boat_speed=v), "params.boat_speed"),
]


@pytest.mark.parametrize("face", ["single", "vector"])
@pytest.mark.parametrize("value", [-1.0, float("nan")])
@pytest.mark.parametrize(("env_id", "params", "name"), BAD_TENSORS)
def test_tensor_constants_are_checked_as_numbers(env_id, params, name, value, face):
    def make(v: Any) -> Any:
        if face == "single":
            return gym.make(env_id, params=params(v))
        return gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", params=params(v))

    with pytest.raises(ValueError, match=re.escape(name)):
        make(value)
    with pytest.raises(ValueError, match=re.escape(name)):
        make(torch.tensor(value))


@pytest.mark.parametrize("face", ["single", "vector"])
def test_a_tensor_constant_steps_as_its_number(face):
    """A constant being differentiated elsewhere (``requires_grad``) is taken by its value."""
    def episode(params: CartpoleParams) -> np.ndarray:
        if face == "single":
            env = gym.make("DiffCartpole-v0", params=params, max_steps=5)
            env.reset(seed=3)
            return np.array([env.step(np.array([0.4], np.float32))[0] for _ in range(5)])
        envs = gym.make_vec("DiffCartpole-v0", num_envs=2, vectorization_mode="vector_entry_point", params=params,
                            max_steps=5)
        envs.reset(seed=3)
        return np.array([envs.step(np.full((2, 1), 0.4, np.float32))[0] for _ in range(5)])

    tensor = CartpoleParams(pole_mass=torch.tensor(0.7, requires_grad=True), gravity=torch.tensor(9.5))
    np.testing.assert_array_equal(episode(tensor), episode(CartpoleParams(pole_mass=0.7, gravity=9.5)))


# ---- params given as a mapping ---------------------------------------------------------------------------------
class Config(Mapping):
    """A read-only mapping that is not a dict (what a Hydra/OmegaConf ``DictConfig`` is to a consumer)."""

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@pytest.mark.parametrize("mapping", [dict(pole_length=0.5), types.MappingProxyType({"pole_length": 0.5}),
                                     Config(pole_length=0.5)], ids=["dict", "proxy", "config"])
def test_params_take_a_mapping_of_fields(mapping):
    env = gym.make("DiffCartpole-v0", params=mapping)
    assert env.unwrapped.params == CartpoleParams(pole_length=0.5)
    envs = gym.make_vec("DiffCartpole-v0", num_envs=2, vectorization_mode="vector_entry_point", params=mapping)
    assert envs.unwrapped.params == CartpoleParams(pole_length=0.5)


@pytest.mark.parametrize("params", [CartpoleParams(pole_length=0.5), {"pole_length": 0.5}])
def test_a_spec_read_back_from_json_makes_the_same_environment(params):
    env = gym.make("DiffCartpole-v0", params=params, cost="quadratic")
    again = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert again.unwrapped.problem == env.unwrapped.problem
    assert gym.make(env.spec).unwrapped.problem == env.unwrapped.problem


def test_a_mapping_with_an_unknown_field_is_refused_by_name():
    with pytest.raises(TypeError, match="'pole_lenght'.*pole_length"):
        gym.make("DiffCartpole-v0", params={"pole_lenght": 0.5})
    with pytest.raises(ValueError, match=r"params\.pole_length"):
        gym.make("DiffCartpole-v0", params={"pole_length": -0.5})


def test_flat_keywords_are_not_constants():
    """``pole_length=0.5`` is not taken for ``params={"pole_length": 0.5}``: the constants are one argument."""
    with pytest.raises(TypeError, match="pole_length"):
        gym.make("DiffCartpole-v0", pole_length=0.5)


# ---- the episode's length: one, max_steps ----------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_the_spec_claims_no_length_that_no_wrapper_applies(env_id):
    env = gym.make(env_id, max_steps=6)
    assert env.spec.max_episode_steps is None and gym.spec(env_id).max_episode_steps is None
    assert not has_wrapper(env, TimeLimit)
    assert wrapper_stack(gym.make(env.spec)) == wrapper_stack(env)  # the spec rebuilds the same stack
    env.reset(seed=0)
    ended = [any(env.step(env.action_space.sample())[2:4]) for _ in range(6)]
    assert ended == [False] * 5 + [True]  # the episode is max_steps long


def test_a_shorter_time_limit_still_cuts_the_episode():
    env = gym.make("DiffCartpole-v0", max_episode_steps=3)
    assert env.spec.max_episode_steps == 3
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(3)]
    assert flags[-1] == (False, True) and not any(any(f) for f in flags[:-1])


# ---- the namespace --------------------------------------------------------------------------------------------
def test_the_ids_are_listed_under_one_namespace():
    listing = gym.pprint_registry(disable_print=True)
    sections = dict(re.findall(r"===== (\S+) =====\n(.*?)(?=\n=====|\Z)", listing, re.S))
    assert "diffenvs" in sections
    for env_id in IDS:
        module = problem_type_of(env_id).__module__.rsplit(".", 1)[-1]
        assert module not in sections  # no section named after a module file
        assert re.search(rf"(?<![/\w]){re.escape(env_id)}", sections["diffenvs"])
        assert f"diffenvs/{env_id}" in sections["diffenvs"]


@pytest.mark.parametrize("env_id", IDS)
def test_the_namespaced_id_makes_the_same_environment(env_id):
    env = gym.make(f"diffenvs/{env_id}", max_steps=6)
    assert env.spec.id == f"diffenvs/{env_id}"
    assert isinstance(env.unwrapped, type(gym.make(env_id).unwrapped))
    assert problem_type_of(f"diffenvs/{env_id}") is problem_type_of(env_id)
    envs = gym.make_vec(f"diffenvs/{env_id}", num_envs=2, vectorization_mode="vector_entry_point", max_steps=6)
    assert type(envs.unwrapped.problem) is type(env.unwrapped.problem)
    assert envs.unwrapped.problem.max_steps == env.unwrapped.problem.max_steps == 6
    assert gym.make(f"diffenvs:{env_id}").spec.id == env_id
    assert gym.spec(env_id).reward_threshold is None  # a return's scale follows the arguments: no threshold per id


# ---- the phase-plane pictures ----------------------------------------------------------------------------------
def colored(frame: np.ndarray, color: tuple[int, int, int]) -> int:
    return int((frame == np.array(color, np.uint8)).all(-1).sum())


@pytest.mark.parametrize("env_id", ["DiffIsochronism-v0", "DiffLinearSysID-v0"])
def test_phase_planes_draw_axes_origin_and_trail(env_id):
    env = gym.make(env_id, render_mode="rgb_array", max_steps=200)
    env.reset(seed=1)
    first = env.render()
    for _ in range(60):
        env.step(np.ones(env.action_space.shape, np.float32))
    frame = env.render()
    assert colored(frame, (0, 0, 0)) > 20  # the ring at the origin
    assert colored(frame, (120, 120, 120)) > 2 * frame.shape[0]  # two axes with ticks
    assert colored(frame, (150, 180, 230)) > colored(first, (150, 180, 230)) + 30  # the path so far
    np.testing.assert_array_equal(env.unwrapped.problem.render(env.unwrapped.state).shape, frame.shape)


# ---- the autoreset mode each client needs ----------------------------------------------------------------------
CLIENTS = {"TorchRL": AutoresetMode.DISABLED, "skrl": AutoresetMode.SAME_STEP, "CleanRL": AutoresetMode.SAME_STEP,
           "Stable-Baselines3": None}


def test_the_faces_page_names_each_clients_autoreset_mode():
    text = (ROOT / "docs" / "faces.md").read_text()
    rows = dict(re.findall(r"^\|\s*([\w-]+)\s*\|\s*`?([\w.]+)`?\s*\|", text, re.M))
    for client, mode in CLIENTS.items():
        assert client in rows, client
        if mode is None:
            assert "VecEnv" in rows[client] or "DiffSB3VecEnv" in rows[client], rows[client]
        else:
            assert rows[client].endswith(mode.name), (client, rows[client])
