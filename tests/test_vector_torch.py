"""The vector face's torch arrays (array="torch"), its fused compiled step, its threads option and its devices."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

from diffenvs.core import random as counter_random

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def native(env_id: str = "DiffCartpole-v0", n: int = 3, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)


def actions_for(vector: gym.vector.VectorEnv, steps: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.0, 1.0, (steps, *vector.action_space.shape)).astype(np.float32)


def as_numpy(value: Any) -> np.ndarray:
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def play(vector: gym.vector.VectorEnv, steps: int, seed: int = 11) -> list[tuple[np.ndarray, ...]]:
    """Observations, rewards and flags of every step (numpy, whatever the env returns), the reset's first."""
    observation, _ = vector.reset(seed=seed)
    record = [(as_numpy(observation),)]
    to_env = (lambda a: torch.as_tensor(a, device=vector.unwrapped.device)) if vector.unwrapped.array == "torch" else None
    for action in actions_for(vector, steps):
        outputs = vector.step(to_env(action) if to_env else action)
        record.append(tuple(as_numpy(o) for o in outputs[:4]))
    return record


@pytest.mark.parametrize("env_id", ["DiffCartpole-v0", "DiffZermelo-v0", "DiffIsochronism-v0", "DiffDecayDesign-v0"])
@pytest.mark.parametrize("mode", list(AutoresetMode)[:2])
def test_torch_arrays_give_the_numpy_trajectories(env_id: str, mode: AutoresetMode) -> None:
    """Same seeds, same actions: the same numbers bit for bit, through autoresets (rewards in the env's dtype)."""
    kwargs = dict(max_steps=7) if env_id != "DiffZermelo-v0" else {}
    numpy_steps = play(native(env_id, autoreset_mode=mode, **kwargs), 20)
    torch_steps = play(native(env_id, autoreset_mode=mode, array="torch", **kwargs), 20)
    for k, (expected, actual) in enumerate(zip(numpy_steps, torch_steps)):
        for e, a in zip(expected, actual):
            assert e.shape == a.shape and np.array_equal(e, a.astype(e.dtype)), f"{env_id} step {k}"


def test_every_output_is_a_tensor_on_the_env_device() -> None:
    vector = native(n=4, array="torch", dtype=torch.float32, max_steps=2)
    observation, info = vector.reset(seed=0)
    assert isinstance(observation, torch.Tensor) and observation.dtype == torch.float32 and observation.shape == (4, 6)
    assert observation.device == torch.device("cpu") and info == {}
    assert vector.observation_space.contains(observation.numpy())
    for action in (torch.zeros(4, 1), torch.zeros(4, 1, dtype=torch.float64), np.zeros((4, 1), np.float32)):
        observation, reward, terminated, truncated, info = vector.step(action)
        assert observation.dtype == torch.float32 and observation.shape == (4, 6)
        assert reward.dtype == torch.float32 and reward.shape == (4,)
        assert terminated.dtype == truncated.dtype == torch.bool and terminated.shape == truncated.shape == (4,)
        assert all(t.device == torch.device("cpu") for t in (observation, reward, terminated, truncated))
    assert isinstance(vector.unwrapped.restart_episodes([1]), torch.Tensor)
    numpy_vector = native(n=4, dtype=torch.float32)
    observation, _ = numpy_vector.reset(seed=0)
    observation, reward, terminated, truncated, _ = numpy_vector.step(np.zeros((4, 1), np.float32))
    assert observation.dtype == np.float32 and reward.dtype == np.float64 and terminated.dtype == truncated.dtype == np.bool_


def test_next_step_autoreset_with_torch_arrays() -> None:
    """The step after an episode's end returns its next episode's first observation, reward 0 and no flag."""
    vector = native(n=2, array="torch", max_steps=3)
    first, _ = vector.reset(seed=5)
    for _ in range(3):
        observation, reward, terminated, truncated, _ = vector.step(torch.zeros(2, 1))
    assert terminated.all() and not truncated.any()
    observation, reward, terminated, truncated, _ = vector.step(torch.ones(2, 1))
    assert not (terminated | truncated).any() and torch.equal(reward, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(observation[:, 5], torch.zeros(2)) and not torch.equal(observation, first)  # the next episode
    single = gym.make("DiffCartpole-v0", max_steps=3)
    single.reset(seed=5)
    for _ in range(3):
        single.step(np.zeros(1, np.float32))
    assert np.array_equal(observation[0].numpy(), single.reset()[0])  # the single env's next episode


def test_same_step_and_disabled_autoreset_with_torch_arrays() -> None:
    vector = native(n=2, array="torch", max_steps=2, autoreset_mode=AutoresetMode.SAME_STEP)
    vector.reset(seed=0)
    vector.step(torch.zeros(2, 1))
    observation, _, terminated, _, info = vector.step(torch.zeros(2, 1))
    assert terminated.all() and torch.equal(observation[:, 5], torch.zeros(2))
    assert info["final_obs"].dtype == object and all(isinstance(o, torch.Tensor) for o in info["final_obs"])
    assert torch.equal(info["_final_obs"], torch.ones(2, dtype=torch.bool))
    assert torch.equal(torch.stack(list(info["final_obs"]))[:, 5], torch.ones(2))
    disabled = native(n=2, array="torch", max_steps=2, autoreset_mode=AutoresetMode.DISABLED)
    disabled.reset(seed=0)
    disabled.step(torch.zeros(2, 1))
    _, _, terminated, truncated, _ = disabled.step(torch.zeros(2, 1))
    with pytest.raises(ResetNeeded):
        disabled.step(torch.zeros(2, 1))
    observation, _ = disabled.reset(options={"reset_mask": terminated | truncated})  # a torch mask is taken
    assert isinstance(observation, torch.Tensor) and torch.equal(observation[:, 5], torch.zeros(2))


def test_a_nonfinite_state_is_reported_in_torch_info() -> None:
    vector = native(n=2, array="torch")
    first, _ = vector.reset(seed=0, options={"state": [[0.0, 0.0, 1.0, 1e30], [0.0, 0.0, 1.0, 0.0]]})
    observation, reward, terminated, truncated, info = vector.step(torch.zeros(2, 1))
    assert torch.equal(truncated, torch.tensor([True, False])) and not terminated.any() and reward[0] == 0.0
    assert torch.equal(info["nonfinite_state"], torch.tensor([True, False])) and info["_nonfinite_state"].dtype == torch.bool
    assert torch.equal(observation[0], first[0])  # the last observation again


def test_bad_arguments_are_named() -> None:
    for array in ("jax", None, 1):
        with pytest.raises(ValueError, match="array must be one of"):
            native(array=array)
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer or None"):
            native(threads=threads)
    vector = native(n=2, array="torch")
    vector.reset(seed=0)
    before = vector.unwrapped.state.copy()
    with pytest.raises(ValueError, match="actions must have shape"):
        vector.step(torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"actions must be finite: 1 of 2 rows are not, the first is row 1: \[nan\]"):
        vector.step(torch.tensor([[0.0], [float("nan")]]))
    np.testing.assert_array_equal(vector.unwrapped.state, before)  # a refused step changes nothing


def test_threads_are_set_for_the_step_only() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for threads in (1, None, 2):
            vector = native(n=4, threads=threads)
            vector.reset(seed=0)
            vector.step(np.zeros((4, 1), np.float32))
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_counter_draws_in_torch_are_the_numpy_draws() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)
    episodes = rng.integers(0, 2**40, 500, dtype=np.uint64)
    as_int64 = [torch.from_numpy(a.view(np.int64)) for a in (keys, episodes)]
    for step in (0, 7, 2**40):
        expected = counter_random.uniform(keys, episodes, step, 4)
        assert np.array_equal(counter_random.uniform_tensor(*as_int64, step, 4).numpy(), expected)
    assert counter_random.uniform_tensor(*as_int64, 0, 0).shape == (500, 0)


def test_the_compiled_step_restarts_episodes_as_the_eager_one() -> None:
    """One fused kernel, the next-step autoreset drawn inside it: the eager step's numbers (float32, a few ulp)."""
    steps = 13
    eager = play(native(n=5, dtype=torch.float32, max_steps=4), steps)
    compiled = play(native(n=5, dtype=torch.float32, max_steps=4, compile=True, array="torch"), steps)
    for k, (expected, actual) in enumerate(zip(eager, compiled)):
        np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-6, err_msg=f"step {k}")
        if k:
            np.testing.assert_allclose(actual[1], expected[1], rtol=1e-4, atol=1e-6, err_msg=f"step {k}")
            assert np.array_equal(actual[2], expected[2]) and np.array_equal(actual[3], expected[3])
    assert eager[5][0][:, 5].max() == 0.0  # step 5 was a restart of every environment


@CUDA
@pytest.mark.parametrize("array", ["numpy", "torch"])
def test_the_vector_face_runs_on_cuda(array: str) -> None:
    cpu = play(native(n=4, array=array, max_steps=5), 12)
    cuda = play(native(n=4, array=array, max_steps=5, device="cuda"), 12)
    for k, (expected, actual) in enumerate(zip(cpu, cuda)):
        for e, a in zip(expected, actual):
            np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-9, err_msg=f"step {k}")
    vector = native(n=4, array=array, device="cuda")
    observation, _ = vector.reset(seed=0)
    if array == "torch":
        assert observation.device.type == "cuda"
        outputs = vector.step(torch.zeros(4, 1, device="cuda"))
        assert all(o.device.type == "cuda" for o in outputs[:4])


@CUDA
def test_the_compiled_step_runs_on_cuda() -> None:
    vector = native(n=64, array="torch", device="cuda", dtype=torch.float32, compile=True, max_steps=3)
    vector.reset(seed=0)
    for _ in range(7):
        observation, reward, terminated, truncated, _ = vector.step(torch.zeros(64, 1, device="cuda"))
    assert observation.device.type == reward.device.type == terminated.device.type == "cuda"


# ---- the compiled step's integrator and the step where nothing happens ---------------------------------------------
@pytest.mark.parametrize("env_id", ["DiffCartpole-v0", "DiffDoublePendulum-v0"])
def test_the_compiled_steps_integrator_is_the_faces_rk4_to_the_last_bit(env_id: str) -> None:
    """The compiled step integrates component by component (one kernel keeps the stages in registers); the faces
    integrate four or more components stacked: the same arithmetic, bit for bit."""
    from diffenvs.core.numerics import TORCH, rk4_step
    from diffenvs.core.problem import Held
    from diffenvs.core.vector_step import Batch, CompiledStep

    problem = gym.make(env_id).unwrapped.problem
    generator = torch.Generator().manual_seed(0)
    x = tuple(torch.randn(64, generator=generator, dtype=torch.float64) for _ in range(problem.state_dim))
    control = Held((torch.randn(64, generator=generator, dtype=torch.float64),) * problem.control_dim)

    def field(t: Any, z: Any, u: Any) -> Any:
        return problem.vector_field(t, z, u.u, problem.params, TORCH)

    assert len(x) >= 4  # stacked by rk4_step

    stacked = rk4_step(field, 0.3, x, problem.dt, control)
    integrate = CompiledStep(Batch(problem, problem.params, torch.float64, torch.device("cpu"), torch.float64), 1
                             ).batch.integrate
    assert integrate is not rk4_step
    componentwise = integrate(field, 0.3, x, problem.dt, control)
    assert all(torch.equal(a, b) for a, b in zip(stacked, componentwise))


@pytest.mark.parametrize("array", ["numpy", "torch"])
def test_a_step_without_flags_returns_fresh_flags(array: str) -> None:
    vector = native(n=4, array=array, max_steps=3)
    vector.reset(seed=0)
    actions = np.zeros((4, 1), np.float32) if array == "numpy" else torch.zeros(4, 1)
    _, _, terminated, truncated, info = vector.step(actions)
    assert info == {} and not terminated.any() and not truncated.any()
    terminated[0] = True  # the caller's array: nothing of the env's
    assert not vector.unwrapped._batch_state.ended.any()
    vector.step(actions)
    _, _, terminated, truncated, _ = vector.step(actions)
    assert (terminated | truncated).all()  # the third step ends the episodes (at the horizon): the flags are read
    _, reward, terminated, truncated, _ = vector.step(actions)
    assert not (terminated.any() or truncated.any()) and not reward.any()  # the restart
