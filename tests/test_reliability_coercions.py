"""The faces take real numbers only, refuse bad constructor arguments by name, and declare what they return:
no bool, string or complex number is an action, an index or a switch, a float32 env clips a huge finite action as
a float64 one does, a device that cannot hold tensors is refused when the env is built, the vector face renders at
the single face's frame rate, and the reward's dtype is declared as it is returned (TorchRL checks it)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from diffenvs.core.validation import as_array


def native(env_id: str = "DiffCartpole-v0", n: int = 2, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)


NOT_REAL = [
    pytest.param(lambda shape: np.full(shape, 0.5 + 1j), id="complex"),
    pytest.param(lambda shape: np.full(shape, "0.5").tolist(), id="strings"),
    pytest.param(lambda shape: np.full(shape, True), id="bools"),
    pytest.param(lambda shape: np.full(shape, True).tolist(), id="list-of-bools"),
]


@pytest.mark.parametrize("make", NOT_REAL)
def test_an_action_is_real_numbers_on_both_faces(make: Any) -> None:
    single = gym.make("DiffCartpole-v0")
    single.reset(seed=0)
    with pytest.raises(TypeError, match="action must be an array of real numbers"):
        single.step(make((1,)))
    vector = native()
    vector.reset(seed=0)
    with pytest.raises(TypeError, match="actions must be an array of real numbers"):
        vector.step(make((2, 1)))


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_a_tensor_of_actions_is_real_numbers(dtype: torch.dtype) -> None:
    vector = native(array="torch")
    vector.reset(seed=0)
    with pytest.raises(TypeError, match=f"actions must be real numbers .*{dtype}"):
        vector.step(torch.zeros(2, 1, dtype=dtype))


def test_integers_remain_numbers() -> None:
    assert as_array("actions", [[1], [0]], (2, 1)).dtype == np.float64
    assert as_array("actions", np.array([[1], [-1]], np.int16), (2, 1)).tolist() == [[1.0], [-1.0]]
    vector = native()
    vector.reset(seed=0)
    vector.step([[1], [-1]])


@pytest.mark.parametrize("action", [3.4e38, 3.5e38, 1e300])
def test_a_float32_env_clips_a_huge_finite_action_as_a_float64_env_does(action: float) -> None:
    steps = {}
    for dtype in (torch.float32, torch.float64):
        vector = native(dtype=dtype)
        vector.reset(seed=0)
        steps[dtype] = vector.step(np.array([[action], [-action]]))
    np.testing.assert_allclose(steps[torch.float32][0], steps[torch.float64][0], rtol=1e-6, atol=1e-6)
    vector = native(dtype=torch.float32)
    vector.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be finite"):
        vector.step(np.array([[np.inf], [0.0]]))


@pytest.mark.parametrize("indices", [[0.7], [True], np.array([1.0])])
def test_restart_episodes_takes_integer_indices_only(indices: Any) -> None:
    vector = native()
    vector.reset(seed=0)
    before = vector.unwrapped.state.copy()
    with pytest.raises(TypeError, match="indices must be integers"):
        vector.unwrapped.restart_episodes(indices)
    assert np.array_equal(vector.unwrapped.state, before)
    assert vector.unwrapped.restart_episodes(np.array([1], np.uint8)).shape == (1, 6)
    assert vector.unwrapped.restart_episodes([]).shape == (0, 6)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_compile_is_a_bool(value: Any) -> None:
    with pytest.raises(TypeError, match="compile must be True or False"):
        native(compile=value)


@pytest.mark.parametrize(("device", "error", "message"), [
    ("nonsense", ValueError, "device must name a torch device"),
    ("meta", ValueError, "device must hold values"),
    (1.5, TypeError, "device must be a torch.device"),
    (True, TypeError, "device must be a torch.device"),
])
def test_a_bad_device_is_refused_by_name(device: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        native(device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: cuda is a good device here")
def test_an_absent_gpu_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="device 'cuda' is not available here"):
        native(device="cuda")


@pytest.mark.parametrize("env_id", ["DiffCartpole-v0", "DiffZermelo-v0"])
def test_the_vector_face_renders_at_the_single_faces_frame_rate(env_id: str) -> None:
    from gymnasium.wrappers.vector import HumanRendering

    single = gym.make(env_id)
    vector = native(env_id, render_mode="rgb_array")
    assert vector.metadata["render_fps"] == single.metadata["render_fps"]
    assert type(vector).metadata["render_fps"] == type(single.unwrapped).metadata["render_fps"]
    HumanRendering(vector)  # raised "The base environment must specify 'render_fps'"


@pytest.mark.parametrize(("array", "dtype"), [("numpy", torch.float64), ("numpy", torch.float32),
                                              ("torch", torch.float64), ("torch", torch.float32)])
def test_the_declared_reward_dtype_is_the_returned_one(array: str, dtype: torch.dtype) -> None:
    vector = native(array=array, dtype=dtype, autoreset_mode=AutoresetMode.SAME_STEP)
    vector.reset(seed=0)
    reward = vector.step(np.zeros((2, 1), np.float32) if array == "numpy" else torch.zeros(2, 1, dtype=dtype))[1]
    space = vector.unwrapped.reward_space
    assert space.shape == (1,)
    assert np.dtype(space.dtype) == (reward.numpy() if array == "torch" else reward).dtype


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torchrl_takes_torch_arrays_in_either_dtype(dtype: torch.dtype) -> None:
    pytest.importorskip("torchrl")
    from torchrl.envs.libs.gym import GymWrapper
    from torchrl.envs.utils import check_env_specs

    env = GymWrapper(native(n=3, array="torch", dtype=dtype, autoreset_mode=AutoresetMode.SAME_STEP, max_steps=5))
    assert env.reward_spec.dtype == dtype
    check_env_specs(env, seed=0)  # failed: "Got fake=torch.float32 and real=torch.float64" for the reward
