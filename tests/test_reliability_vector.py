"""The vector face against N single environments: bit for bit where the arithmetic allows, Gymnasium's autoreset modes,
and its checks on large batches."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import diffenvs
from diffenvs.core import numerics
from diffenvs.core.vector_face import as_finite_batch

IDS = diffenvs.ENV_IDS
#: ids whose vector face equals N single environments bit for bit, as computed (no transcendental function, no solve)
EXACT = {"DiffIsochronism-v0"}
#: why the others can differ in the last bit of a float64: Python's ``math`` (libm, the single face) and torch's
#: vectorised kernels (the vector face) round these functions differently; the arithmetic around them is the same
LAST_BIT = {
    "DiffZermelo-v0": "exp (the wind), sin and cos (the heading), erf (the timeout cost)",
    "DiffCartpole-v0": "sin and cos (the vector field, the observation)",
    "DiffDoublePendulum-v0": "sin and cos (the vector field, the observation)",
    "DiffLinearSysID-v0": "sqrt (the control's ball), log1p in the noise draws, the LAPACK solve of the estimate",
    "DiffDecayDesign-v0": "exp and log1p (the measurement, the information gain), log1p in the noise draws",
}


def singles_sync(env_id: str, n: int, mode: AutoresetMode, **kwargs: Any) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(n)], autoreset_mode=mode)


def native(env_id: str, n: int, mode: AutoresetMode = AutoresetMode.NEXT_STEP, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", autoreset_mode=mode, **kwargs)


def assert_same(actual: Any, expected: Any, exact: bool, what: str) -> None:
    """Equal bit for bit, or (``exact`` false) equal flags and values to a few units in the last place."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    if exact or actual.dtype == np.bool_:
        assert np.array_equal(actual, expected), what
    elif actual.dtype == np.float32:
        np.testing.assert_array_max_ulp(actual, expected, maxulp=2)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12, err_msg=what)


def assert_same_info(actual: dict, expected: dict, exact: bool, what: str) -> None:
    assert sorted(actual) == sorted(expected), f"{what}: info keys {sorted(actual)} != {sorted(expected)}"
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_same_info(actual[key], value, exact, f"{what} info[{key!r}]")
        elif value.dtype == object:  # final_obs: an observation or None per environment
            for a, e in zip(actual[key], value):
                assert (a is None) == (e is None), f"{what} info[{key!r}]"
                if e is not None:
                    assert_same(a, e, exact, f"{what} info[{key!r}]")
        else:
            assert_same(actual[key], value, exact, f"{what} info[{key!r}]")


def play_against_sync(env_id: str, mode: AutoresetMode, steps: int, exact: bool, n: int = 3, seed: int = 11,
                      **kwargs: Any) -> int:
    """Step the vector face and a SyncVectorEnv of single envs in ``mode`` with the same actions; the episodes ended."""
    vector, sync = native(env_id, n, mode, **kwargs), singles_sync(env_id, n, mode, **kwargs)
    assert vector.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode == vector.autoreset_mode
    observation, info = vector.reset(seed=seed)
    expected_observation, expected_info = sync.reset(seed=seed)
    assert_same(observation, expected_observation, exact, "reset")
    assert info == expected_info == {}
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (steps, *vector.action_space.shape)).astype(np.float32)
    ended = 0
    for k, action in enumerate(actions):
        outputs, expected = vector.step(action), sync.step(action)
        for name, a, e in zip(("observation", "reward", "terminated", "truncated"), outputs[:4], expected[:4]):
            assert_same(a, e, exact, f"step {k} {name}")
        assert_same_info(outputs[4], expected[4], exact, f"step {k}")
        done = outputs[2] | outputs[3]
        ended += int(done.sum())
        if mode == AutoresetMode.DISABLED and done.any():
            with pytest.raises(ResetNeeded, match="reset_mask"):
                vector.step(action)
            observation, info = vector.reset(options={"reset_mask": done})
            expected_observation, expected_info = sync.reset(options={"reset_mask": done})
            assert_same(observation, expected_observation, exact, f"step {k} partial reset")
            assert info == expected_info == {}
    return ended


# ---- bit for bit -------------------------------------------------------------------------------------------------
def libm(function: Any) -> Any:
    """``function`` of Python's ``math`` element by element on a float64 tensor (the single face's rounding)."""
    elementwise = np.frompyfunc(function, 1, 1)
    return lambda t: torch.as_tensor(elementwise(t.cpu().numpy()).astype(np.float64), dtype=t.dtype, device=t.device)


def play_against_singles(env_id: str, steps: int | None = None, n: int = 3, seed: int = 11) -> dict[str, list]:
    """The vector face and N single envs (next-step autoreset) with the same actions: each output of both, per step."""
    vector, singles = native(env_id, n), [gym.make(env_id) for _ in range(n)]
    steps = steps or (260 if env_id == "DiffZermelo-v0" else 2 * singles[0].unwrapped.problem.max_steps + 5)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (steps, *vector.action_space.shape)).astype(np.float32)
    record: dict[str, list] = {key: [] for key in ("observation", "reward", "terminated", "truncated", "state", "ended")}
    observation, _ = vector.reset(seed=seed)
    record["observation"].append((observation, np.array([env.reset(seed=seed + i)[0] for i, env in enumerate(singles)])))
    ended = np.zeros(n, bool)
    for action in actions:
        outputs = vector.step(action)
        expected = [(env.reset()[0], 0.0, False, False) if ended[i] else env.step(action[i])[:4]
                    for i, env in enumerate(singles)]
        for j, key in enumerate(("observation", "reward", "terminated", "truncated")):
            dtype = outputs[j].dtype
            record[key].append((outputs[j], np.array([e[j] for e in expected], dtype=dtype)))
        record["state"].append((vector.unwrapped.state, np.array([env.unwrapped.state for env in singles])))
        ended = outputs[2] | outputs[3]
        record["ended"].append(ended)
    return record


@pytest.mark.parametrize("env_id", IDS)
def test_vector_face_equals_n_single_envs_bit_for_bit_where_the_arithmetic_allows(env_id: str) -> None:
    """Default kwargs, through autoresets. The ids of LAST_BIT call functions that libm and torch round differently:
    their flags are equal and their values agree to a few units in the last place."""
    record = play_against_singles(env_id)
    assert np.sum(record["ended"]) >= 3  # the comparison went through autoresets
    exact = env_id in EXACT
    for key in ("observation", "reward", "terminated", "truncated", "state"):
        for k, (actual, expected) in enumerate(record[key]):
            assert_same(actual, expected, exact, f"{env_id} {key} at step {k}")
    if not exact:
        assert env_id in LAST_BIT, f"{env_id} is neither exact nor has its reason recorded"


@pytest.mark.parametrize("env_id", IDS)
def test_with_libms_functions_the_vector_face_is_the_single_env_bit_for_bit(env_id: str, monkeypatch) -> None:
    """The differences of LAST_BIT are the rounding of the functions and nothing else: evaluate those through libm
    on the vector face (element by element, slowly) and every output is bit for bit the single environment's, except
    LinearSysID's final reward, whose least-squares solve is LAPACK's (MKL under torch, OpenBLAS under numpy)."""
    for name in ("sin", "cos", "exp", "log1p", "erf", "sqrt"):
        monkeypatch.setattr(numerics.TORCH, name, libm(getattr(math, name)))
    record = play_against_singles(env_id)
    assert np.sum(record["ended"]) >= 3
    for key in ("observation", "reward", "terminated", "truncated", "state"):
        for k, (actual, expected) in enumerate(record[key]):
            exact = not (env_id == "DiffLinearSysID-v0" and key == "reward")
            assert_same(actual, expected, exact, f"{env_id} {key} at step {k}")


def test_time_is_computed_in_float64_as_the_single_env_computes_it() -> None:
    """The time observation came from an integer step in float32: 6e-8 off the single environment's at every step."""
    record = play_against_singles("DiffCartpole-v0", steps=30)
    for actual, expected in record["observation"]:
        assert np.array_equal(actual[:, 5], expected[:, 5])
    vector = native("DiffIsochronism-v0", 2, observe="full", max_steps=7)
    single = gym.make("DiffIsochronism-v0", observe="full", max_steps=7)
    vector.reset(seed=0), single.reset(seed=0)
    for _ in range(5):
        observation = vector.step(np.zeros((2, 1), np.float32))[0]
        assert observation[0, 2] == single.step(np.zeros(1, np.float32))[0][2]


# ---- the autoreset modes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(AutoresetMode))
@pytest.mark.parametrize("env_id", IDS)
def test_each_autoreset_mode_equals_gymnasiums_sync_vector_env(env_id: str, mode: AutoresetMode) -> None:
    ended = play_against_sync(env_id, mode, steps=15, exact=env_id in EXACT, max_steps=6)
    assert ended >= 6


def test_partial_ends_in_every_mode() -> None:
    """Zermelo's episodes end at the bank, at steps that differ between environments."""
    for mode in AutoresetMode:
        play_against_sync("DiffZermelo-v0", mode, steps=150, exact=False, n=4)


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_a_nonfinite_state_is_reported_as_gymnasium_reports_infos(mode: AutoresetMode) -> None:
    states = [[0.0, 0.0, 1.0, 1e30], [0.0, 0.0, 1.0, 0.0]]
    vector, sync = native("DiffCartpole-v0", 2, mode), singles_sync("DiffCartpole-v0", 2, mode)
    vector.reset(seed=0, options={"state": states})
    sync.reset(seed=0)
    for i, (env, state) in enumerate(zip(sync.envs, states)):
        env.reset(seed=i, options={"state": state})  # what the vector face's reset(seed=0, options=...) does
    outputs, expected = vector.step(np.zeros((2, 1), np.float32)), sync.step(np.zeros((2, 1), np.float32))
    assert outputs[3].tolist() == expected[3].tolist() == [True, False]
    assert_same_info(outputs[4], expected[4], True, str(mode))
    flags = outputs[4]["final_info"] if mode == AutoresetMode.SAME_STEP else outputs[4]
    assert flags["nonfinite_state"].tolist() == flags["_nonfinite_state"].tolist() == [True, False]
    if mode == AutoresetMode.DISABLED:
        return
    # the next step restarts (NEXT_STEP) or continues (SAME_STEP) that environment: nothing non-finite is reported
    outputs, expected = vector.step(np.zeros((2, 1), np.float32)), sync.step(np.zeros((2, 1), np.float32))
    assert outputs[4] == expected[4] == {}
    assert_same(outputs[0], expected[0], True, str(mode))


def test_partial_resets_take_seeds_and_states_as_gymnasium_does() -> None:
    env_id, n = "DiffCartpole-v0", 3
    vector, sync = native(env_id, n, AutoresetMode.DISABLED), singles_sync(env_id, n, AutoresetMode.DISABLED)
    assert_same(vector.reset(seed=4)[0], sync.reset(seed=4)[0], True, "reset")
    mask = np.array([True, False, True])
    assert_same(vector.reset(seed=9, options={"reset_mask": mask})[0], sync.reset(seed=9, options={"reset_mask": mask})[0],
                True, "seeded partial reset")
    assert_same(vector.reset(options={"reset_mask": mask})[0], sync.reset(options={"reset_mask": mask})[0], True,
                "next episodes")
    # a list of seeds: None continues an environment's sequence, as a single env reset without a seed
    assert_same(vector.reset(seed=[None, 5, None])[0], sync.reset(seed=[None, 5, None])[0], True, "seed list")
    states = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 2.0, 0.0], [2.0, 0.0, 3.0, 0.0]])
    observation, _ = vector.reset(options={"reset_mask": np.array([False, True, False]), "state": states})
    np.testing.assert_array_equal(vector.unwrapped.state[1], states[1])
    assert not np.array_equal(vector.unwrapped.state[0], states[0])
    assert observation.shape == (n, 6)


def test_autoreset_mode_and_reset_mask_are_checked() -> None:
    assert native("DiffZermelo-v0", 2, "SameStep").autoreset_mode == AutoresetMode.SAME_STEP
    with pytest.raises(ValueError, match="autoreset_mode"):
        native("DiffZermelo-v0", 2, "same_step")
    vector = native("DiffZermelo-v0", 2, AutoresetMode.DISABLED)
    with pytest.raises(ResetNeeded, match="reset_mask"):
        vector.reset(options={"reset_mask": np.array([True, False])})
    vector.reset(seed=0)
    for mask, error, message in [([True, False], TypeError, "numpy array"), (np.ones(3, bool), ValueError, "shape"),
                                 (np.ones(2, int), TypeError, "dtype"), (np.zeros(2, bool), ValueError, "at least one")]:
        with pytest.raises(error, match=message):
            vector.reset(options={"reset_mask": mask})
    with pytest.raises(TypeError, match=r"seed\[1\]"):
        vector.reset(seed=[0, 1.5])
    with pytest.raises(ValueError, match="unknown keys"):
        vector.reset(options={"mask": np.ones(2, bool)})


def test_sb3_vec_env_keeps_the_default_next_step_mode() -> None:
    from agents.sb3_vec import make_vec_env

    vec_env = make_vec_env("DiffCartpole-v0", 2, 0, {"max_steps": 2})
    assert vec_env.vector_env.autoreset_mode == AutoresetMode.NEXT_STEP
    vec_env.reset()
    for _ in range(2):
        _, _, dones, infos = vec_env.step(np.zeros((2, 1), np.float32))
    assert dones.all() and all("terminal_observation" in info for info in infos)


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, AutoresetMode.SAME_STEP])
def test_torchrl_gym_wrapper_accepts_the_vector_face(mode: AutoresetMode) -> None:
    pytest.importorskip("torchrl")
    from torchrl.envs.libs.gym import GymWrapper
    from torchrl.envs.utils import check_env_specs

    env = GymWrapper(native("DiffCartpole-v0", 3, mode, max_steps=5))
    assert tuple(env.batch_size) == (3,)
    check_env_specs(env, seed=0)
    rollout = env.rollout(12, break_when_any_done=False)
    assert int(rollout["next", "done"].sum()) == 6  # episodes of 5 steps, restarted by TorchRL through the mode
    with pytest.raises(RuntimeError, match="auto-reset mode"):
        GymWrapper(native("DiffCartpole-v0", 3))


# ---- checks on large batches -------------------------------------------------------------------------------------
def test_num_envs_refuses_bools_and_accepts_numpy_integers() -> None:
    with pytest.raises(TypeError, match="num_envs must be a positive integer, got True"):
        native("DiffZermelo-v0", True)
    with pytest.raises(TypeError, match="num_envs"):
        native("DiffZermelo-v0", 2.0)
    with pytest.raises(ValueError, match="num_envs must be a positive integer, got 0"):
        native("DiffZermelo-v0", np.int64(0))
    vector = native("DiffZermelo-v0", np.int64(3))
    assert vector.num_envs == 3 and type(vector.num_envs) is int
    assert vector.reset(seed=0)[0].shape == (3, 3)  # (x, y, t/T) per row


def test_a_bad_row_in_a_large_batch_is_named_briefly() -> None:
    actions = np.zeros((100_000, 1))
    actions[70_001] = np.nan
    actions[90_000] = np.inf
    with pytest.raises(ValueError) as error:
        as_finite_batch("actions", actions, (100_000, 1))
    message = str(error.value)
    assert "actions" in message and "2 of 100000 rows" in message and "row 70001: [nan]" in message
    assert len(message) < 200
    vector = native("DiffCartpole-v0", 2_000)
    vector.reset(seed=0)
    actions = np.zeros((2_000, 1), np.float32)
    actions[1_234] = np.nan
    with pytest.raises(ValueError, match=r"actions must be finite: 1 of 2000 rows are not, the first is row 1234: \[nan\]"):
        vector.step(actions)
    states = np.zeros((2_000, 4))
    states[7, 2] = np.inf
    with pytest.raises(ValueError, match=r'options\["state"\] must be finite: 1 of 2000 rows .* row 7: \[0.0, 0.0, inf'):
        vector.reset(options={"state": states})
    with pytest.raises(ValueError, match="must have shape"):
        vector.step(np.zeros((3, 1)))
    before = vector.unwrapped.state.copy()
    states = np.zeros((2_000, 4))
    states[5, 1] = 1e200  # the cart's velocity beyond the float32 range of the observation
    with pytest.raises(ValueError, match="float32 range"):
        vector.reset(seed=3, options={"state": states, "reset_mask": np.arange(2_000) % 2 == 1})
    np.testing.assert_array_equal(vector.unwrapped.state, before)  # a refused reset changes nothing
    zermelo = native("DiffZermelo-v0", 3)
    with pytest.raises(ValueError, match=r'options\["state"\] row 2: state y must be below'):
        zermelo.reset(options={"state": [[0.0, 0.0], [0.0, 1.0], [0.0, 5.0]]})
    with pytest.raises(TypeError, match="real numbers") as type_error:  # strings are no actions, not even "0.5"
        vector.step(["x"] * 2_000)
    assert len(str(type_error.value)) < 300
